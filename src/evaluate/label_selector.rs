//! A model of `labels.Parse` and `Selector.Matches` from k8s.io/apimachinery
//! `pkg/labels/selector.go` (v0.35.0, which ACK runtime v0.58.0+ builds against), with key and
//! value checks from `pkg/api/validate/content` (`IsLabelKey`, `IsLabelValue`,
//! `IsDNS1123Subdomain`).
//!
//! The ACK runtime parses `--watch-selectors` with `labels.Parse`: a parse error stops the
//! controller at start, and a resource whose labels do not match is never reconciled.
//! Runtimes v0.44.0 to v0.57.0 build against apimachinery v0.32.1, whose `parseIdentifiersList`
//! (before 65de33d) also rejects a value list ending in an even run of commas, e.g. `x in (a,,)`.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector: the AND of its requirements, sorted by key as `parse` sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Why a selector failed to parse, and the byte offset in the input where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for SelectorError {}

impl LabelSelector {
    /// `labels.Parse`: the empty (or all-blank) string is the selector matching everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Parser::new(s).parse_all()?;
        // Go's `sort.Sort(ByKey)` is an insertion sort up to 12 items, so stable in practice.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// `internalSelector.Matches`: every requirement holds; `labels` looks a key up.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels(&r.key)))
    }

    /// `internalSelector.Empty`: true when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// `internalSelector.String`: requirements joined by `,` with no spaces.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `selection.Operator`; `=` and `==` stay apart because `String` prints them as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// `labels.Requirement`; `values` are sorted and unique, as `sets.String.List` leaves them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    /// `Requirement.Matches`, given the label's value if the key is present.
    fn matches(&self, label: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Op::In | Op::Equals | Op::DoubleEquals => label.is_some_and(has),
            // Absent keys satisfy the negative operators.
            Op::NotIn | Op::NotEquals => label.is_none_or(|v| !has(v)),
            Op::Exists => label.is_some(),
            Op::DoesNotExist => label.is_none(),
            Op::Gt | Op::Lt => label.is_some_and(|v| self.compares(v)),
        }
    }

    /// Gt/Lt: both sides must parse as base-10 i64 (`strconv.ParseInt(_, 10, 64)`).
    fn compares(&self, label: &str) -> bool {
        let bound = self.values.first().map(|v| v.parse::<i64>());
        let (Ok(have), Some(Ok(bound))) = (label.parse::<i64>(), bound) else {
            return false;
        };
        if self.op == Op::Gt {
            have > bound
        } else {
            have < bound
        }
    }
}

/// `Requirement.String`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = (&self.key, self.values.join(","));
        match self.op {
            Op::Exists => write!(f, "{k}"),
            Op::DoesNotExist => write!(f, "!{k}"),
            Op::Equals => write!(f, "{k}={v}"),
            Op::DoubleEquals => write!(f, "{k}=={v}"),
            Op::NotEquals => write!(f, "{k}!={v}"),
            Op::In => write!(f, "{k} in ({v})"),
            Op::NotIn => write!(f, "{k} notin ({v})"),
            Op::Gt => write!(f, "{k}>{v}"),
            Op::Lt => write!(f, "{k}<{v}"),
        }
    }
}

// ---- Lexer: Go's `Lexer.Lex`, byte by byte ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    Ident,
    In,
    NotIn,
    Comma,
    OpenPar,
    ClosedPar,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Gt,
    Lt,
}

#[derive(Debug, Clone, Copy)]
struct Token<'s> {
    tok: Tok,
    lit: &'s str,
    pos: usize,
}

impl<'s> Token<'s> {
    fn new(lit: &'s str, pos: usize) -> Self {
        let tok = classify(lit);
        Token { tok, lit, pos }
    }
}

/// `isWhitespace`.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `isSpecialSymbol`: these end an identifier.
fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// `string2token`; anything else the lexer produces is an identifier, never empty.
fn classify(lit: &str) -> Tok {
    match lit {
        "" => Tok::End,
        "," => Tok::Comma,
        "(" => Tok::OpenPar,
        ")" => Tok::ClosedPar,
        "!" => Tok::Bang,
        "=" => Tok::Equals,
        "==" => Tok::DoubleEquals,
        "!=" => Tok::NotEquals,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        "in" => Tok::In,
        "notin" => Tok::NotIn,
        _ => Tok::Ident,
    }
}

/// One token at or after `pos` and the offset where lexing resumes.
fn lex(s: &str, mut pos: usize) -> (Token<'_>, usize) {
    let b = s.as_bytes();
    while b.get(pos).is_some_and(|&c| is_blank(c)) {
        pos += 1;
    }
    let end = match b.get(pos) {
        // Go's `read` yields 0 both past the end and for a NUL byte.
        None | Some(&0) => return (Token::new("", pos), pos),
        // `scanSpecialSymbol` takes the longest token: only `==` and `!=` are two bytes.
        Some(&c) if is_special(c) => {
            let two = matches!(c, b'=' | b'!') && b.get(pos + 1) == Some(&b'=');
            pos + if two { 2 } else { 1 }
        }
        Some(_) => {
            let rest = &b[pos..];
            pos + rest
                .iter()
                .take_while(|&&c| c != 0 && !is_special(c) && !is_blank(c))
                .count()
        }
    };
    let lit = &s[pos..end];
    // Go's scanners read a NUL that ends a token and never unread it.
    let next = if b.get(end) == Some(&0) { end + 1 } else { end };
    (Token::new(lit, pos), next)
}

/// `Parser.scan`: every token, ending with one `End`.
fn tokenize(s: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        let (token, next) = lex(s, pos);
        tokens.push(token);
        if token.tok == Tok::End {
            return tokens;
        }
        pos = next;
    }
}

// ---- Parser: Go's `Parser.parse` and helpers ----

/// Values with the offset each was first seen at; a `BTreeMap` sorts and dedups like `sets.String`.
type ValueSet<'s> = BTreeMap<&'s str, usize>;

struct Parser<'s> {
    tokens: Vec<Token<'s>>,
    next: usize,
}

fn error(position: usize, message: String) -> SelectorError {
    SelectorError { position, message }
}

/// A "found X, expected: Y" error at `t`.
fn found(t: Token<'_>, expected: &str) -> SelectorError {
    let what = match t.tok {
        Tok::End => "end of string".to_string(),
        _ => format!("'{}'", t.lit),
    };
    error(t.pos, format!("found {what}, expected: {expected}"))
}

/// The `Values` parser context: `in` and `notin` read as identifiers.
fn as_value(mut t: Token<'_>) -> Token<'_> {
    if matches!(t.tok, Tok::In | Tok::NotIn) {
        t.tok = Tok::Ident;
    }
    t
}

impl<'s> Parser<'s> {
    fn new(s: &'s str) -> Self {
        Parser {
            tokens: tokenize(s),
            next: 0,
        }
    }

    /// `lookahead(Values)`.
    fn peek(&self) -> Token<'s> {
        as_value(self.tokens[self.next])
    }

    /// `consume(KeyAndOperator)`; stays on `End` so it can never run off the list.
    fn bump(&mut self) -> Token<'s> {
        let t = self.tokens[self.next];
        if t.tok != Tok::End {
            self.next += 1;
        }
        t
    }

    /// `consume(Values)`.
    fn bump_value(&mut self) -> Token<'s> {
        as_value(self.bump())
    }

    /// `Parser.parse`: requirements separated by single commas; no trailing comma.
    fn parse_all(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Ident | Tok::Bang => requirements.push(self.parse_requirement()?),
                Tok::End => return Ok(requirements),
                _ => return Err(found(t, "!, identifier, or end of string")),
            }
            let t = self.bump_value();
            match t.tok {
                Tok::End => return Ok(requirements),
                Tok::Comma => {
                    let t2 = self.peek();
                    if !matches!(t2.tok, Tok::Ident | Tok::Bang) {
                        return Err(found(t2, "identifier after ','"));
                    }
                }
                _ => return Err(found(t, "',' or end of string")),
            }
        }
    }

    /// `parseRequirement`.
    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(op) = unary {
            let values = Vec::new();
            return Ok(Requirement { key, op, values });
        }
        let op = self.parse_operator()?;
        let values = match op {
            Op::In | Op::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values)
    }

    /// `parseKeyAndInferOperator`: `!key` is DoesNotExist whatever follows (the caller then
    /// rejects trailing tokens); a bare key before `,` or the end is Exists.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Op>), SelectorError> {
        let mut t = self.bump_value();
        let mut op = None;
        if t.tok == Tok::Bang {
            op = Some(Op::DoesNotExist);
            t = self.bump_value();
        }
        if t.tok != Tok::Ident {
            return Err(found(t, "identifier"));
        }
        validate_key(t.lit).map_err(|m| error(t.pos, m))?;
        if op.is_none() && matches!(self.peek().tok, Tok::End | Tok::Comma) {
            op = Some(Op::Exists);
        }
        Ok((t.lit.to_string(), op))
    }

    /// `parseOperator`, in the `KeyAndOperator` context so `in`/`notin` are operators.
    fn parse_operator(&mut self) -> Result<Op, SelectorError> {
        let t = self.bump();
        Ok(match t.tok {
            Tok::In => Op::In,
            Tok::NotIn => Op::NotIn,
            Tok::Equals => Op::Equals,
            Tok::DoubleEquals => Op::DoubleEquals,
            Tok::NotEquals => Op::NotEquals,
            Tok::Gt => Op::Gt,
            Tok::Lt => Op::Lt,
            _ => return Err(found(t, "in, notin, =, ==, !=, >, <")),
        })
    }

    /// `parseValues`: `(` list `)`; `()` is the set holding only the empty value.
    fn parse_values(&mut self) -> Result<ValueSet<'s>, SelectorError> {
        let t = self.bump_value();
        if t.tok != Tok::OpenPar {
            return Err(found(t, "'('"));
        }
        let t = self.peek();
        match t.tok {
            Tok::Ident | Tok::Comma => {
                let set = self.parse_identifiers_list()?;
                self.bump(); // The list returns Ok only with `)` next.
                Ok(set)
            }
            Tok::ClosedPar => {
                self.bump();
                Ok(ValueSet::from([("", t.pos)]))
            }
            _ => Err(found(t, "',', ')' or identifier")),
        }
    }

    /// `parseIdentifiersList`: a leading, doubled or trailing comma adds the empty value.
    fn parse_identifiers_list(&mut self) -> Result<ValueSet<'s>, SelectorError> {
        let mut set = ValueSet::new();
        loop {
            let t = self.bump_value();
            match t.tok {
                Tok::Ident => {
                    set.entry(t.lit).or_insert(t.pos);
                    let t2 = self.peek();
                    match t2.tok {
                        Tok::Comma => {}
                        Tok::ClosedPar => return Ok(set),
                        _ => return Err(found(t2, "',' or ')'")),
                    }
                }
                Tok::Comma => {
                    let t2 = self.peek().tok;
                    if set.is_empty() || matches!(t2, Tok::Comma | Tok::ClosedPar) {
                        set.entry("").or_insert(t.pos);
                    }
                    if t2 == Tok::ClosedPar {
                        return Ok(set);
                    }
                }
                _ => return Err(found(t, "',', or identifier")),
            }
        }
    }

    /// `parseExactValue`: nothing before `,` or the end is the empty value.
    fn parse_exact_value(&mut self) -> Result<ValueSet<'s>, SelectorError> {
        let t = self.peek();
        if matches!(t.tok, Tok::End | Tok::Comma) {
            return Ok(ValueSet::from([("", t.pos)]));
        }
        let t = self.bump_value();
        if t.tok != Tok::Ident {
            return Err(found(t, "identifier"));
        }
        Ok(ValueSet::from([(t.lit, t.pos)]))
    }
}

/// `NewRequirement`'s value checks, in its order (the key was checked while parsing). The
/// parser always yields one value for exact and Gt/Lt operators and at least one for sets.
fn new_requirement(
    key: String,
    op: Op,
    values: ValueSet<'_>,
) -> Result<Requirement, SelectorError> {
    for (&v, &pos) in &values {
        if matches!(op, Op::Gt | Op::Lt) && v.parse::<i64>().is_err() {
            let m = format!("for '>', '<' operators, the value must be an integer, found '{v}'");
            return Err(error(pos, m));
        }
    }
    for (&v, &pos) in &values {
        validate_value(v).map_err(|m| error(pos, m))?;
    }
    let values = values.into_keys().map(str::to_string).collect();
    Ok(Requirement { key, op, values })
}

// ---- Validation: `content.IsLabelKey`, `content.IsLabelValue`, `IsDNS1123Subdomain` ----

const NAME_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;
const NAME_CHARS: &str = "consist of alphanumeric characters, '-', '_' or '.', \
                          and must start and end with an alphanumeric character";
const SLASHES: &str = "must be a name with an optional DNS subdomain prefix and '/' \
                       (e.g. 'example.com/MyName')";

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the name part of a key and a non-empty value.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner)
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: one label of a lowercase DNS subdomain.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner = |c: &u8| edge(c) || *c == b'-';
    b.first().is_some_and(edge) && b.last().is_some_and(edge) && b.iter().all(inner)
}

/// `IsDNS1123Subdomain`: only the total length is capped, not each label.
fn subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX {
        errs.push(format!("must be no more than {SUBDOMAIN_MAX} bytes"));
    }
    if !s.split('.').all(is_dns_label) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
             characters, '-' or '.', and must start and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// `IsLabelKey`: `[prefix/]name`, every problem listed as Go joins them.
fn key_errors(key: &str) -> Vec<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => return vec![format!("{SLASHES}, and the name must {NAME_CHARS}")],
    };
    let mut errs = Vec::new();
    match prefix {
        Some("") => errs.push("prefix part must be non-empty".to_string()),
        Some(p) => {
            let prefixed = subdomain_errors(p)
                .into_iter()
                .map(|e| format!("prefix part {e}"));
            errs.extend(prefixed);
        }
        None => {}
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > NAME_MAX {
        errs.push(format!("name part must be no more than {NAME_MAX} bytes"));
    }
    if !is_name(name) {
        errs.push(format!("name part must {NAME_CHARS}"));
    }
    errs
}

fn validate_key(key: &str) -> Result<(), String> {
    let errs = key_errors(key);
    if errs.is_empty() {
        return Ok(());
    }
    Err(format!("invalid label key '{key}': {}", errs.join("; ")))
}

/// `IsLabelValue`: empty, or a name of at most 63 bytes.
fn validate_value(v: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if v.len() > NAME_MAX {
        errs.push(format!("must be no more than {NAME_MAX} bytes"));
    }
    if !v.is_empty() && !is_name(v) {
        errs.push(format!("must be empty or {NAME_CHARS}"));
    }
    if errs.is_empty() {
        return Ok(());
    }
    Err(format!("invalid label value '{v}': {}", errs.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Want {
        /// Parses, and prints back as this.
        Prints(&'static str),
        /// Fails at this byte offset with a message containing this text.
        Fails(usize, &'static str),
    }
    use Want::{Fails, Prints};

    /// Expectations follow `Parser.parse` and its helpers, `NewRequirement`,
    /// `IsLabelKey`/`IsLabelValue` and `Requirement.String` in apimachinery v0.35.0.
    #[rustfmt::skip]
    const PARSE_CASES: &[(&str, &str, Want)] = &[
        // `parse` returns no requirements for only `End`.
        ("empty_is_everything", "", Prints("")),
        ("blanks_are_everything", " \t\r\n", Prints("")),
        // `parse` sorts `ByKey`; `internalSelector.String` joins with ",".
        ("sorted_by_key", "x=a,a=x", Prints("a=x,x=a")),
        // `skipWhiteSpaces` between every token.
        ("blanks_between_tokens", " foo  in\t (abc , def) ", Prints("foo in (abc,def)")),
        ("double_equals_kept", "y==jkl", Prints("y==jkl")),
        // `parseExactValue` inserts "" before ',' or the end.
        ("empty_exact_values", "x=,z!= ", Prints("x=,z!=")),
        // `parseValues` turns "()" into {""}.
        ("empty_set_is_empty_value", "x notin ( )", Prints("x notin ()")),
        // `parseIdentifiersList` + `sets.String`: sorted, deduplicated, commas add "".
        ("set_sorted_deduped", "x in (b,,a,b,)", Prints("x in (,a,b)")),
        ("consecutive_commas_v0_35", "x in (a,,)", Prints("x in (,a)")),
        // `lookahead(Values)` reads in/notin as identifiers for keys and values.
        ("keywords_as_key_and_values", "in in (notin, in)", Prints("in in (in,notin)")),
        ("unary_operators", "!x, y", Prints("!x,y")),
        ("gt_lt", "x>1,z<5", Prints("x>1,z<5")),
        ("gt_max_i64", "x>9223372036854775807", Prints("x>9223372036854775807")),
        ("prefixed_key", "app.example.com/tier=web", Prints("app.example.com/tier=web")),
        // `read` yields 0 for NUL; `scanIDOrKeyword` drops it and lexing goes on.
        ("nul_ends_identifier", "a=b\0,c", Prints("a=b,c")),
        ("leading_comma", ",x", Fails(0, "expected: !, identifier")),
        ("double_comma", "x,,y", Fails(2, "identifier after ','")),
        ("trailing_comma", "a in (xyz),", Fails(11, "found end of string, expected: identifier")),
        // `||` is not special, so "a||y" is one value, rejected by `IsLabelValue`.
        ("or_is_a_bad_value", "x=a||y=b", Fails(2, "invalid label value 'a||y'")),
        ("chained_equals", "x==a==b", Fails(4, "expected: ',' or end of string")),
        // `parseRequirement` returns at once for `!key`; `parse` rejects the rest.
        ("not_with_value", "!x=a", Fails(2, "found '='")),
        // `scanSpecialSymbol` has no ">=" token.
        ("no_greater_equal", "x>=1", Fails(2, "found '=', expected: identifier")),
        ("gt_not_integer", "x<a", Fails(2, "must be an integer")),
        ("gt_empty", "x>", Fails(2, "must be an integer")),
        ("gt_overflow", "x>9223372036854775808", Fails(2, "must be an integer")),
        // ParseInt accepts "-1" but the value must still be a label value.
        ("gt_negative", "x>-1", Fails(2, "invalid label value '-1'")),
        ("set_without_comma", "a in (xyz abc)", Fails(10, "found 'abc', expected: ',' or ')'")),
        ("set_unclosed", "a notin(", Fails(8, "expected: ',', ')' or identifier")),
        ("in_without_set", "a in", Fails(4, "expected: '('")),
        ("unknown_operator", "x nott in (y)", Fails(2, "found 'nott', expected: in, notin")),
        ("key_bad_end", "a_=b", Fails(0, "invalid label key 'a_': name part must consist")),
        ("key_uppercase_prefix", "Example.com/a", Fails(0, "prefix part a lowercase RFC 1123")),
        ("key_empty_prefix", "/a", Fails(0, "prefix part must be non-empty")),
        ("key_two_slashes", "a/b/c", Fails(0, "optional DNS subdomain prefix")),
        ("key_non_ascii", "é=a", Fails(0, "invalid label key 'é'")),
    ];

    #[test]
    fn parse_cases() {
        for (name, input, want) in PARSE_CASES {
            match (LabelSelector::parse(input), want) {
                (Ok(s), Prints(text)) => {
                    assert_eq!(s.to_string(), *text, "{name}");
                    assert_eq!(s.is_empty(), text.is_empty(), "{name}");
                    let again = LabelSelector::parse(text).expect(name);
                    assert_eq!(again, s, "{name}: printed form re-parses the same");
                }
                (Err(e), Fails(pos, text)) => {
                    assert_eq!(e.position, *pos, "{name}: {e}");
                    assert!(e.message.contains(text), "{name}: {e}");
                }
                (got, _) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    /// The error `parse` gives for `s`, as displayed.
    fn error_of(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    /// `IsLabelKey`: name at most 63 bytes, prefix at most 253 (not per DNS label);
    /// `IsLabelValue`: at most 63 bytes.
    #[test]
    fn length_limits() {
        let name63 = "a".repeat(63);
        let prefix253 = format!("{}.{}", "b".repeat(126), "c".repeat(126));
        let ok = format!("{prefix253}/{name63}={name63}");
        assert!(LabelSelector::parse(&ok).is_ok());
        let e = error_of(&format!("{name63}a"));
        assert!(e.contains("name part must be no more than 63 bytes"), "{e}");
        let e = error_of(&format!("{prefix253}b/a"));
        assert!(e.contains("prefix part must be no more than 253"), "{e}");
        let e = error_of(&format!("k={name63}a"));
        assert!(e.starts_with("position 2: invalid label value"), "{e}");
        assert!(e.contains("must be no more than 63 bytes"), "{e}");
    }

    #[test]
    fn error_display() {
        let want = "position 2: found end of string, expected: identifier after ','";
        assert_eq!(error_of("a,"), want);
    }

    type Set = &'static [(&'static str, &'static str)];

    /// Expectations follow `Requirement.Matches`, and cases of `TestSelectorMatches` and
    /// `TestRequirementSelectorMatching` in selector_test.go.
    #[rustfmt::skip]
    const MATCH_CASES: &[(&str, &str, Set, bool)] = &[
        ("empty_matches_all", "", &[("x", "y")], true),
        ("equals", "x=y", &[("x", "y")], true),
        ("equals_other_value", "x=y", &[("x", "z")], false),
        ("equals_absent", "x=z", &[], false),
        ("not_equals", "x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
        ("not_equals_absent", "x!=y", &[], true),
        ("not_equals_same", "x!=y", &[("x", "y")], false),
        ("in_set", "x in (a,b)", &[("x", "b")], true),
        ("in_empty_needs_empty", "x in ()", &[("y", "baz")], false),
        ("in_empty_value", "x in ()", &[("x", "")], true),
        ("notin_absent", "x notin (),y", &[("y", "")], true),
        ("notin_member", "x notin (a)", &[("x", "a")], false),
        ("exists", "x", &[("x", "z")], true),
        ("exists_absent", "x", &[("y", "z")], false),
        ("not_exists", "!x", &[("y", "z")], true),
        ("not_exists_present", "!x", &[("x", "")], false),
        ("gt", "x>1", &[("x", "2")], true),
        ("gt_equal", "x>1", &[("x", "1")], false),
        ("gt_not_integer", "z>1", &[("z", "v2")], false),
        ("gt_absent", "x>1", &[], false),
        // ParseInt accepts a sign on the label's side.
        ("lt_negative_label", "x<0", &[("x", "-5")], true),
        ("lt_leading_zero", "x<10", &[("x", "09")], true),
        ("all_must_hold", "foo=bar,foobar=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")], false),
        ("keywords", "notin=in", &[("notin", "in")], true),
    ];

    #[test]
    fn match_cases() {
        for (name, selector, set, want) in MATCH_CASES {
            let s = LabelSelector::parse(selector).expect(name);
            let lookup = |k: &str| set.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            assert_eq!(s.matches(lookup), *want, "{name}");
        }
    }
}
