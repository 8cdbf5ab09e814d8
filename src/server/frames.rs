//! HTTP/2 request heads as they arrive, for the request-header timeout: hyper hands over a
//! request only once its header block is complete, and does not time the wait. Here the frame
//! headers of what the client sends are read as hyper reads it: from a HEADERS frame's header
//! to the end of the frame that ends its header block (END_HEADERS, on it or on
//! its last CONTINUATION), a head is arriving. Header blocks cannot interleave with other
//! frames (RFC 9113 §6.10), so one state per connection is enough.

use super::park::Signals;

/// The client connection preface, which the first frame follows (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Where the client's byte stream is, frame by frame.
pub(super) struct Frames {
    /// Preface bytes still to pass.
    preface_left: usize,
    /// The frame header being read, and how much of it has been.
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
    /// Whether the current frame ends a header block once its payload has passed.
    ends_head: bool,
}

impl Frames {
    pub(super) fn new() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            payload_left: 0,
            ends_head: false,
        }
    }

    /// Follows `bytes`, the next the client sent, telling `signals` when a head begins and ends.
    pub(super) fn read(&mut self, mut bytes: &[u8], signals: &Signals) {
        while !bytes.is_empty() {
            let n = if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                if self.payload_left == 0 {
                    self.frame_done(signals);
                }
                n
            } else if self.have == 0 && bytes.len() >= FRAME_HEADER_LEN {
                // A whole frame header at hand, as nearly always: read in place.
                self.frame_began(&bytes[..FRAME_HEADER_LEN], signals);
                FRAME_HEADER_LEN
            } else {
                let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                if self.have == FRAME_HEADER_LEN {
                    self.have = 0;
                    let header = self.header;
                    self.frame_began(&header, signals);
                }
                n
            };
            bytes = &bytes[n..];
        }
    }

    fn frame_began(&mut self, header: &[u8], signals: &Signals) {
        let &[l0, l1, l2, kind, flags, ..] = header else {
            return;
        };
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        self.ends_head = false;
        if kind == HEADERS || kind == CONTINUATION {
            signals.head_started();
            self.ends_head = flags & END_HEADERS != 0;
        }
        if self.payload_left == 0 {
            self.frame_done(signals);
        }
    }

    fn frame_done(&mut self, signals: &Signals) {
        if self.ends_head {
            self.ends_head = false;
            signals.head_ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.resize(FRAME_HEADER_LEN + payload, 0);
        f
    }

    #[test]
    fn a_head_lasts_from_its_first_headers_byte_to_the_end_of_its_block() {
        // The clock's first reading is 0, which would read as no head at all.
        crate::clock::now();
        let signals = Signals::default();
        let mut frames = Frames::new();
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x4, 0, 6)); // SETTINGS
        frames.read(&stream, &signals);
        assert!(signals.head_for().is_none());

        // HEADERS without END_HEADERS, a byte at a time: the head is arriving from its frame
        // header on.
        for (i, byte) in frame(HEADERS, 0, 10).into_iter().enumerate() {
            frames.read(&[byte], &signals);
            assert_eq!(
                signals.head_for().is_some(),
                i >= FRAME_HEADER_LEN - 1,
                "{i}"
            );
        }
        frames.read(&frame(CONTINUATION, 0, 3), &signals);
        assert!(signals.head_for().is_some());
        let last = frame(CONTINUATION, END_HEADERS, 4);
        frames.read(&last[..last.len() - 1], &signals);
        assert!(
            signals.head_for().is_some(),
            "its last byte is still to come"
        );
        frames.read(&last[last.len() - 1..], &signals);
        assert!(signals.head_for().is_none());

        // A whole head in one frame, then DATA: no head arriving after it.
        let mut next = frame(HEADERS, END_HEADERS, 20);
        next.extend(frame(0x0, 0, 100));
        frames.read(&next, &signals);
        assert!(signals.head_for().is_none());
    }
}
