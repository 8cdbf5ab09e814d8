//! The rule parser: `Host(`a`) && (PathPrefix(`/b`) || !Method(`GET`))`, values in backticks or
//! double quotes. Errors name the column (1-based) where the rule goes wrong.

use std::fmt;

use super::{Matcher, Rule};

/// A rule that does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The rule as written.
    pub rule: String,
    /// Where the error is, in characters from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule `{}`: {} at column {}",
            self.rule, self.message, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// Rules longer than this are refused (they come from users; keep the parser's work bounded).
const MAX_RULE_LEN: usize = 8 * 1024;
/// Deepest nesting of parentheses and `!`.
const MAX_DEPTH: usize = 64;

/// Parses a rule in Traefik's v3 syntax.
pub fn parse(rule: &str) -> Result<Rule, ParseError> {
    let mut p = Parser {
        src: rule,
        pos: 0,
        depth: 0,
    };
    if rule.len() > MAX_RULE_LEN {
        return Err(p.error(0, format!("is longer than {MAX_RULE_LEN} bytes")));
    }
    p.skip_space();
    if p.pos == rule.len() {
        return Err(p.error(0, "is empty".into()));
    }
    let parsed = p.or()?;
    p.skip_space();
    if p.pos < rule.len() {
        return Err(p.error(p.pos, format!("unexpected `{}`", p.rest_token())));
    }
    Ok(parsed)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, at: usize, message: String) -> ParseError {
        ParseError {
            rule: self.src.to_owned(),
            column: self.src[..at.min(self.src.len())].chars().count() + 1,
            message,
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn rest_token(&self) -> String {
        self.rest()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(16)
            .collect()
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Rule, ParseError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Rule::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Rule, ParseError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Rule::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Rule, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.pos, format!("nests deeper than {MAX_DEPTH}")));
        }
        let result = if self.eat("!") {
            self.unary().map(|r| Rule::Not(Box::new(r)))
        } else if self.eat("(") {
            let open = self.pos - 1;
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error(open, "unclosed `(`".into()));
            }
            Ok(inner)
        } else {
            self.matcher()
        };
        self.depth -= 1;
        result
    }

    fn matcher(&mut self) -> Result<Rule, ParseError> {
        self.skip_space();
        let start = self.pos;
        let name: String = self
            .rest()
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if name.is_empty() {
            let found = self.rest_token();
            let message = if found.is_empty() {
                "expected a matcher, found the end".to_owned()
            } else {
                format!("expected a matcher, found `{found}`")
            };
            return Err(self.error(start, message));
        }
        self.pos += name.len();
        if !self.eat("(") {
            return Err(self.error(self.pos, format!("expected `(` after `{name}`")));
        }
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.string()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.error(self.pos, "expected `,` or `)`".into()));
                }
            }
        }
        Matcher::new(&name, args)
            .map(Rule::Matcher)
            .map_err(|message| self.error(start, message))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_space();
        let start = self.pos;
        let Some(quote) = self
            .rest()
            .chars()
            .next()
            .filter(|c| *c == '`' || *c == '"')
        else {
            return Err(self.error(start, "expected a value in backticks".into()));
        };
        let body = &self.rest()[1..];
        let Some(end) = body.find(quote) else {
            return Err(self.error(start, "unclosed value".into()));
        };
        let value = body[..end].to_owned();
        self.pos += end + 2;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(rule: &str) -> String {
        parse(rule).unwrap_err().to_string()
    }

    #[test]
    fn precedence_and_grouping() {
        // `&&` binds tighter than `||`.
        let r = parse("Method(`GET`) || Method(`PUT`) && Path(`/x`)").unwrap();
        assert!(matches!(r, Rule::Or(_, ref right) if matches!(**right, Rule::And(..))));
        let r = parse("(Method(`GET`) || Method(`PUT`)) && Path(`/x`)").unwrap();
        assert!(matches!(r, Rule::And(ref left, _) if matches!(**left, Rule::Or(..))));
        let r = parse("!Method(`GET`) && Path(\"/x\")").unwrap();
        assert!(matches!(r, Rule::And(ref left, _) if matches!(**left, Rule::Not(_))));
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(
            err("Host(`a`) && Heder(`x`,`y`)"),
            "rule `Host(`a`) && Heder(`x`,`y`)`: unknown matcher `Heder` at column 14"
        );
        assert_eq!(
            err("Host(`a`) &&"),
            "rule `Host(`a`) &&`: expected a matcher, found the end at column 13"
        );
        assert_eq!(
            err("Host(`a`"),
            "rule `Host(`a``: expected `,` or `)` at column 9"
        );
        assert_eq!(
            err("Host(`a)"),
            "rule `Host(`a)`: unclosed value at column 6"
        );
        assert_eq!(
            err("(Host(`a`)"),
            "rule `(Host(`a`)`: unclosed `(` at column 1"
        );
        assert_eq!(
            err("Host(`a`) Path(`/`)"),
            "rule `Host(`a`) Path(`/`)`: unexpected `Path(`/`)` at column 11"
        );
        assert_eq!(
            err("Header(`x`)"),
            "rule `Header(`x`)`: Header takes 2 values (name, value), got 1 at column 1"
        );
        let e = err("PathRegexp(`(`)");
        assert!(
            e.starts_with("rule `PathRegexp(`(`)`: PathRegexp: bad regular expression `(`"),
            "{e}"
        );
        assert!(err("").contains("is empty"));
        assert!(err(&"!".repeat(100)).contains("nests deeper"));
    }
}
