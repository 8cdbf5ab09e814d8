//! The condition that trips a circuit breaker, in Traefik's language:
//! `NetworkErrorRatio() > 0.30 || ResponseCodeRatio(500, 600, 0, 600) > 0.25`, with
//! `LatencyAtQuantileMS(50.0)`, the comparisons `>`, `>=`, `<`, `<=`, `==`, `!=`, `&&`, `||`
//! and parentheses; and in the same grammar the condition on which a buffering middleware
//! sends a request again (`retryExpression`: `IsNetworkError() && Attempts() < 2`, with
//! `ResponseCode()`).

use std::fmt;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expression {
    /// Either side.
    Or(Box<Expression>, Box<Expression>),
    /// Both sides.
    And(Box<Expression>, Box<Expression>),
    /// A metric against a number.
    Compare(Metric, Op, f64),
}

/// What a condition reads of the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Responses 502 and 504 (what a failed connection or a timeout is answered with) among
    /// all.
    NetworkErrorRatio,
    /// Responses with a status in `[0]..[1]` among those in `[2]..[3]` (ends exclusive).
    ResponseCodeRatio([u16; 4]),
    /// The latency at this percentile (`50.0`), in milliseconds.
    LatencyAtQuantileMs(f64),
    /// A retry's: the attempts made so far.
    Attempts,
    /// A retry's: the last attempt's status (a failed one's 502 or 504).
    ResponseCode,
    /// A retry's: 1 when the last attempt's status is 502 or 504, else 0 (`IsNetworkError()`,
    /// which stands alone).
    NetworkError,
}

/// Which functions an expression may call.
#[derive(Clone, Copy, PartialEq)]
enum Language {
    /// A circuit breaker's, over a window of responses.
    Breaker,
    /// A buffering middleware's `retryExpression`, over one request's attempts.
    Retry,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `left op right`.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => (left - right).abs() < f64::EPSILON,
            Op::Ne => (left - right).abs() >= f64::EPSILON,
        }
    }
}

/// Why an expression does not parse, and where.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    /// The byte offset.
    pub at: usize,
    /// What was expected or found.
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.at, self.what)
    }
}

impl Expression {
    /// Parses `text`, a circuit breaker's condition.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Self::parse_in(text, Language::Breaker)
    }

    /// Parses `text`, a buffering middleware's `retryExpression`.
    pub fn parse_retry(text: &str) -> Result<Self, ParseError> {
        Self::parse_in(text, Language::Retry)
    }

    fn parse_in(text: &str, language: Language) -> Result<Self, ParseError> {
        let mut p = Parser {
            text,
            at: 0,
            language,
        };
        let expression = p.or()?;
        p.skip_space();
        if p.at < text.len() {
            return Err(p.error("`&&`, `||` or the end"));
        }
        Ok(expression)
    }

    /// Evaluates the condition with `read` giving each metric's value.
    pub fn holds(&self, read: &dyn Fn(Metric) -> f64) -> bool {
        match self {
            Expression::Or(a, b) => a.holds(read) || b.holds(read),
            Expression::And(a, b) => a.holds(read) && b.holds(read),
            Expression::Compare(metric, op, value) => op.holds(read(*metric), *value),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    language: Language,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn error(&self, expected: &str) -> ParseError {
        let found: String = self.rest().chars().take(20).collect();
        ParseError {
            at: self.at,
            what: if found.is_empty() {
                format!("expected {expected}, found the end")
            } else {
                format!("expected {expected}, found {found:?}")
            },
        }
    }

    fn or(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expression::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.term()?;
        while self.eat("&&") {
            left = Expression::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expression, ParseError> {
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("`)`"));
            }
            return Ok(inner);
        }
        let metric = match self.language {
            Language::Breaker => self.metric()?,
            Language::Retry => self.retry_metric()?,
        };
        if metric == Metric::NetworkError {
            return Ok(Expression::Compare(metric, Op::Ne, 0.0));
        }
        let op = self.op()?;
        Ok(Expression::Compare(metric, op, self.number()?))
    }

    /// A function of a retry's condition.
    fn retry_metric(&mut self) -> Result<Metric, ParseError> {
        let metric = if self.eat("IsNetworkError(") {
            Metric::NetworkError
        } else if self.eat("Attempts(") {
            Metric::Attempts
        } else if self.eat("ResponseCode(") {
            Metric::ResponseCode
        } else {
            return Err(self.error("IsNetworkError(), Attempts() or ResponseCode()"));
        };
        self.close()?;
        Ok(metric)
    }

    fn metric(&mut self) -> Result<Metric, ParseError> {
        if self.eat("NetworkErrorRatio(") {
            self.close()?;
            Ok(Metric::NetworkErrorRatio)
        } else if self.eat("ResponseCodeRatio(") {
            let mut codes = [0u16; 4];
            for (i, code) in codes.iter_mut().enumerate() {
                if i > 0 && !self.eat(",") {
                    return Err(self.error("`,` (ResponseCodeRatio takes four status codes)"));
                }
                *code = self.status()?;
            }
            self.close()?;
            if codes[0] >= codes[1] || codes[2] >= codes[3] {
                return Err(ParseError {
                    at: self.at,
                    what: "ResponseCodeRatio's ranges must each end above where they start".into(),
                });
            }
            Ok(Metric::ResponseCodeRatio(codes))
        } else if self.eat("LatencyAtQuantileMS(") {
            let at = self.at;
            let quantile = self.number()?;
            if !(0.0..=100.0).contains(&quantile) {
                return Err(ParseError {
                    at,
                    what: format!("the quantile {quantile} is not between 0 and 100"),
                });
            }
            self.close()?;
            Ok(Metric::LatencyAtQuantileMs(quantile))
        } else {
            Err(self.error(
                "NetworkErrorRatio(), ResponseCodeRatio(from, to, dividedByFrom, dividedByTo) or LatencyAtQuantileMS(quantile)",
            ))
        }
    }

    fn close(&mut self) -> Result<(), ParseError> {
        if self.eat(")") {
            Ok(())
        } else {
            Err(self.error("`)`"))
        }
    }

    fn op(&mut self) -> Result<Op, ParseError> {
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        for (token, op) in ops {
            if self.eat(token) {
                return Ok(op);
            }
        }
        Err(self.error("a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`)"))
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        match rest[..len].parse::<f64>() {
            Ok(n) => {
                self.at += len;
                Ok(n)
            }
            Err(_) => Err(self.error("a number")),
        }
    }

    fn status(&mut self) -> Result<u16, ParseError> {
        let at = self.at;
        let n = self.number()?;
        if n.fract() != 0.0 || !(0.0..=1000.0).contains(&n) {
            return Err(ParseError {
                at,
                what: format!("{n} is not a status code"),
            });
        }
        // In 0..=1000 and whole: exact.
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(n as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefiks_documented_expressions_parse() {
        assert_eq!(
            Expression::parse("LatencyAtQuantileMS(50.0) > 100"),
            Ok(Expression::Compare(
                Metric::LatencyAtQuantileMs(50.0),
                Op::Gt,
                100.0
            ))
        );
        let e = Expression::parse(
            "ResponseCodeRatio(500, 600, 0, 600) > 0.30 || NetworkErrorRatio() > 0.10",
        )
        .unwrap();
        assert_eq!(
            e,
            Expression::Or(
                Box::new(Expression::Compare(
                    Metric::ResponseCodeRatio([500, 600, 0, 600]),
                    Op::Gt,
                    0.30
                )),
                Box::new(Expression::Compare(Metric::NetworkErrorRatio, Op::Gt, 0.10))
            )
        );
        assert!(
            Expression::parse("(NetworkErrorRatio() >= 0.5 && LatencyAtQuantileMS(99.0) < 5)")
                .is_ok()
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_values_decide() {
        let e = Expression::parse(
            "NetworkErrorRatio() > 0.5 || NetworkErrorRatio() > 0.1 && LatencyAtQuantileMS(50.0) > 100",
        )
        .unwrap();
        let read = |net: f64, latency: f64| {
            move |m: Metric| match m {
                Metric::NetworkErrorRatio => net,
                _ => latency,
            }
        };
        assert!(e.holds(&read(0.6, 0.0)));
        assert!(!e.holds(&read(0.2, 50.0)));
        assert!(e.holds(&read(0.2, 150.0)));
    }

    #[test]
    fn retry_expressions_read_attempts_and_the_last_status() {
        let e = Expression::parse_retry("IsNetworkError() && Attempts() < 2").unwrap();
        let read = |attempts: f64, status: f64| {
            move |m: Metric| match m {
                Metric::Attempts => attempts,
                Metric::ResponseCode => status,
                Metric::NetworkError => f64::from(u8::from(status == 502.0 || status == 504.0)),
                _ => f64::NAN,
            }
        };
        assert!(e.holds(&read(1.0, 502.0)));
        assert!(!e.holds(&read(2.0, 502.0)));
        assert!(!e.holds(&read(1.0, 503.0)));
        let e = Expression::parse_retry(
            "ResponseCode() == 503 || (IsNetworkError() && Attempts() <= 3)",
        )
        .unwrap();
        assert!(e.holds(&read(5.0, 503.0)));
        assert!(e.holds(&read(3.0, 504.0)));
        assert!(Expression::parse_retry("NetworkErrorRatio() > 0.5").is_err());
        assert!(Expression::parse("Attempts() < 2").is_err());
        let e = Expression::parse_retry("RequestMethod() == \"GET\"").unwrap_err();
        assert!(
            e.what
                .contains("IsNetworkError(), Attempts() or ResponseCode()"),
            "{e}"
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = Expression::parse("NetworkErrorRatio() > ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "at byte 22: expected a number, found the end"
        );
        let e = Expression::parse("Latency(50.0) > 1").unwrap_err();
        assert!(e.what.contains("NetworkErrorRatio()"), "{e}");
        let e = Expression::parse("ResponseCodeRatio(600, 500, 0, 600) > 0.1").unwrap_err();
        assert!(e.what.contains("end above"), "{e}");
        let e = Expression::parse("NetworkErrorRatio() > 0.1 extra").unwrap_err();
        assert!(e.what.starts_with("expected `&&`, `||` or the end"), "{e}");
    }
}
