//! The grammar of `key = "..."` and `tags = ["..."]`: text with `{arg}`
//! placeholders, `{{` and `}}` for literal braces.

use proc_macro2::{Ident, Span};
use syn::LitStr;

/// A parsed template string.
pub(crate) struct Template {
    pub(crate) lit: LitStr,
    pub(crate) pieces: Vec<Piece>,
}

pub(crate) enum Piece {
    /// Literal text, braces already unescaped.
    Text(String),
    /// `{name}`: the argument `name`, formatted with `Display`.
    Arg(String),
}

impl Template {
    /// Parses `lit`, the value of option `option` (for messages).
    pub(crate) fn parse(lit: LitStr, option: &str) -> syn::Result<Self> {
        let pieces = parse_pieces(&lit.value()).map_err(|problem| {
            let msg = match problem {
                Problem::Unclosed => format!(
                    "unclosed `{{` in `{option}` template; close it with `}}`, or write `{{{{` for a literal brace"
                ),
                Problem::Unmatched => format!(
                    "unmatched `}}` in `{option}` template; write `}}}}` for a literal brace"
                ),
                Problem::Empty => format!(
                    "empty `{{}}` in `{option}` template; expected an argument name, such as `{{id}}`"
                ),
                Problem::NotAName(inner) => format!(
                    "`{{{inner}}}` in `{option}` template is not an argument name; only `{{name}}` is supported, without expressions or format specs"
                ),
            };
            syn::Error::new(lit.span(), msg)
        })?;
        Ok(Template { lit, pieces })
    }

    /// The names interpolated, in order, with repetitions.
    pub(crate) fn args(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Arg(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Placeholders one after the other with no text between, or with text
    /// that starts with a character an argument may be written with (a
    /// letter, digit, `-`, `_` or `.`): then two argument lists could
    /// render the same string. The names of the first such pair.
    pub(crate) fn ambiguous_pair(&self) -> Option<(&str, &str)> {
        let mut previous: Option<&str> = None;
        let mut separated = true;
        for piece in &self.pieces {
            match piece {
                Piece::Arg(name) => {
                    if let Some(prev) = previous
                        && !separated
                    {
                        return Some((prev, name));
                    }
                    previous = Some(name);
                    separated = false;
                }
                Piece::Text(text) => {
                    separated = text.chars().next().is_some_and(|c| {
                        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    });
                }
            }
        }
        None
    }

    /// The text of a template without placeholders; `None` when it has some.
    pub(crate) fn constant(&self) -> Option<String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Arg(_) => return None,
            }
        }
        Some(out)
    }

    /// The `format!` string: text re-escaped, each argument as `{}`.
    pub(crate) fn format_string(&self) -> LitStr {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(&text.replace('{', "{{").replace('}', "}}")),
                Piece::Arg(_) => out.push_str("{}"),
            }
        }
        LitStr::new(&out, self.span())
    }

    pub(crate) fn span(&self) -> Span {
        self.lit.span()
    }
}

#[derive(Debug, PartialEq)]
enum Problem {
    Unclosed,
    Unmatched,
    Empty,
    NotAName(String),
}

fn parse_pieces(s: &str) -> Result<Vec<Piece>, Problem> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err(Problem::Unmatched),
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        None => return Err(Problem::Unclosed),
                        Some('}') => break,
                        Some(c) => inner.push(c),
                    }
                }
                let name = inner.trim();
                if name.is_empty() {
                    return Err(Problem::Empty);
                }
                let name = name.strip_prefix("r#").unwrap_or(name);
                if !is_identifier(name) {
                    return Err(Problem::NotAName(inner));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(name.to_owned()));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && s != "_"
}

/// The argument name as written in a template: `r#type` is `{type}`.
pub(crate) fn name_of(ident: &Ident) -> String {
    use syn::ext::IdentExt;
    ident.unraw().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(s: &str) -> Result<(String, Vec<String>), Problem> {
        let pieces = parse_pieces(s)?;
        let template = Template {
            lit: LitStr::new(s, Span::call_site()),
            pieces,
        };
        Ok((
            template.format_string().value(),
            template.args().map(str::to_owned).collect(),
        ))
    }

    fn ambiguous(s: &str) -> Option<(String, String)> {
        let template = Template {
            lit: LitStr::new(s, Span::call_site()),
            pieces: parse_pieces(s).unwrap(),
        };
        template
            .ambiguous_pair()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    }

    #[test]
    fn placeholders_need_a_separator() {
        for ok in [
            "user:{org}:{name}",
            "{a}/{b}",
            "{a}",
            "x{a}y",
            "{a} {b}",
            "{a}:x-{b}",
        ] {
            assert_eq!(ambiguous(ok), None, "{ok}");
        }
        for bad in [
            "{a}{b}",
            "{a}-{b}",
            "{a}_{b}",
            "{a}.{b}",
            "{a}x:{b}",
            "p:{a}:{b}{c}",
        ] {
            assert!(ambiguous(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn grammar() {
        assert_eq!(format("products").unwrap(), ("products".into(), vec![]));
        assert_eq!(format("").unwrap(), ("".into(), vec![]));
        assert_eq!(
            format("product:{id}").unwrap(),
            ("product:{}".into(), vec!["id".into()])
        );
        assert_eq!(
            format("{a}{ b }:{r#type}").unwrap(),
            (
                "{}{}:{}".into(),
                vec!["a".into(), "b".into(), "type".into()]
            )
        );
        assert_eq!(
            format("{{literal}} {x}").unwrap(),
            ("{{literal}} {}".into(), vec!["x".into()])
        );
        assert_eq!(format("}}{{").unwrap(), ("}}{{".into(), vec![]));
    }

    #[test]
    fn problems() {
        assert_eq!(format("a{b").unwrap_err(), Problem::Unclosed);
        assert_eq!(format("a{").unwrap_err(), Problem::Unclosed);
        assert_eq!(format("a}b").unwrap_err(), Problem::Unmatched);
        assert_eq!(format("a{}").unwrap_err(), Problem::Empty);
        assert_eq!(format("{ }").unwrap_err(), Problem::Empty);
        assert_eq!(
            format("{id:?}").unwrap_err(),
            Problem::NotAName("id:?".into())
        );
        assert_eq!(
            format("{a.b}").unwrap_err(),
            Problem::NotAName("a.b".into())
        );
        assert_eq!(format("{0}").unwrap_err(), Problem::NotAName("0".into()));
        assert_eq!(format("{_}").unwrap_err(), Problem::NotAName("_".into()));
    }
}
