//! Parses the arguments of `#[cached(...)]`.
//!
//! Syntax errors stop the parse (there is no telling where the next option
//! starts); every other problem is recorded in the [`Ctxt`] and parsing goes
//! on, so that all of them are reported at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitBool, LitStr, Path, Token, UnOp};

use crate::ctxt::Ctxt;
use crate::suggest;
use crate::template::Template;

/// Every option, with the syntax shown when it is misused.
const OPTIONS: &[(&str, &str)] = &[
    ("ttl", "`ttl = 600` or `ttl = \"10m\"`"),
    ("tags", "`tags = [\"products\", \"product:{id}\"]`"),
    ("key", "`key = \"product:{id}\"`"),
    ("skip", "`skip(arg, ...)`"),
    ("cache", "`cache = <expression>`"),
    ("cache_none", "`cache_none = true`"),
    ("lock", "`lock = false`"),
    ("lock_ttl", "`lock_ttl = \"10s\"`"),
    ("crate", "`crate = \"path::to::cache_runtime\"`"),
    ("companions", "`companions = false`"),
    ("codec", "`codec = \"json\"` or `codec = \"msgpack\"`"),
    ("grace", "`grace = \"1h\"`"),
    ("timeout", "`timeout = \"300ms\"`"),
    ("refresh_ahead", "`refresh_ahead = true`"),
    ("local", "`local = false`"),
    (
        "ttl_from",
        "`ttl_from = path::to::fn` (a `fn(&T) -> Option<Duration>`)",
    ),
    ("unless", "`unless = path::to::fn` (a `fn(&T) -> bool`)"),
    (
        "tags_from",
        "`tags_from = path::to::fn` (a `fn(&T) -> Vec<String>`)",
    ),
    ("batch", "`batch = ids` (the collection argument)"),
];

/// The value formats of `codec = "..."`, with the runtime's name of each.
pub(crate) const CODECS: &[(&str, &str)] = &[("json", "Json"), ("msgpack", "MsgPack")];

/// The parsed arguments. An option given with a bad value is absent here
/// (the error is in the `Ctxt`).
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) ttl_secs: Option<u64>,
    pub(crate) tags: Option<Vec<Template>>,
    pub(crate) key: Option<Template>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) cache: Option<Expr>,
    pub(crate) cache_none: Option<Setting<bool>>,
    pub(crate) lock: Option<Setting<bool>>,
    pub(crate) lock_ttl_ms: Option<Setting<u64>>,
    pub(crate) krate: Option<Path>,
    pub(crate) companions: Option<bool>,
    /// The runtime's name of the codec (`Json`, `MsgPack`).
    pub(crate) codec: Option<&'static str>,
    pub(crate) grace_secs: Option<Setting<u64>>,
    pub(crate) timeout_ms: Option<Setting<u64>>,
    pub(crate) refresh_ahead: Option<Setting<bool>>,
    pub(crate) local: Option<bool>,
    /// `ttl_from = path`: the entry's TTL from its value.
    pub(crate) ttl_from: Option<Setting<syn::ExprPath>>,
    /// `unless = path`: values it accepts are returned, not stored.
    pub(crate) unless: Option<Setting<syn::ExprPath>>,
    /// `tags_from = path`: tags taken from the value, after the body.
    pub(crate) tags_from: Option<Setting<syn::ExprPath>>,
    /// `batch = ids`: the collection argument whose items are cached one
    /// by one.
    pub(crate) batch: Option<Ident>,
    /// The options seen so far, to report duplicates.
    seen: Vec<String>,
}

/// A value with the span of the option's name, for errors about the option
/// itself (`cache_none` on a function that does not return `Option`).
pub(crate) struct Setting<T> {
    pub(crate) name: Span,
    pub(crate) value: T,
}

pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| args.option(cx, meta));
    if let Err(error) = parser.parse2(tokens) {
        cx.push(error);
    }
    if let (Some(lock), Some(lock_ttl)) = (&args.lock, &args.lock_ttl_ms)
        && !lock.value
    {
        cx.error_at(
            lock_ttl.name,
            "`lock_ttl` has no effect with `lock = false`; remove one of them",
        );
    }
    if let Some(timeout) = &args.timeout_ms
        && args.grace_secs.is_none()
    {
        cx.error_at(
            timeout.name,
            "`timeout` needs `grace`: it bounds how long a caller waits for a refresh when it has a grace value to fall back on; add `grace = \"1h\"` (or how long an expired value may be served)",
        );
    }
    args
}

impl Args {
    /// Whether a refresh should run in a task of its own (`grace` or
    /// `refresh_ahead`).
    pub(crate) fn refreshes(&self) -> bool {
        self.grace_secs.is_some() || self.refresh_ahead.as_ref().is_some_and(|r| r.value)
    }

    fn option(&mut self, cx: &Ctxt, meta: ParseNestedMeta) -> syn::Result<()> {
        let Some(name) = meta.path.get_ident().map(|ident| ident.unraw().to_string()) else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown `cached` option `{}`; expected one of {}",
                    path_to_string(&meta.path),
                    suggest::list(OPTIONS.iter().map(|(name, _)| *name)),
                ),
            );
            return skip_value(meta.input);
        };
        let Some(&(name, usage)) = OPTIONS.iter().find(|(option, _)| *option == name) else {
            let expected = suggest::list(OPTIONS.iter().map(|(name, _)| *name));
            let msg = match suggest::closest(&name, OPTIONS.iter().map(|(name, _)| *name)) {
                Some(close) => format!(
                    "unknown `cached` option `{name}`; did you mean `{close}`? (expected one of {expected})"
                ),
                None => format!("unknown `cached` option `{name}`; expected one of {expected}"),
            };
            cx.error_spanned_by(&meta.path, msg);
            return skip_value(meta.input);
        };
        let span = meta.path.segments[0].ident.span();
        if self.seen.iter().any(|seen| seen == name) {
            cx.error_at(span, format!("duplicate `cached` option `{name}`"));
            return skip_value(meta.input);
        }
        self.seen.push(name.to_owned());

        if name == "skip" {
            if !meta.input.peek(syn::token::Paren) {
                cx.error_at(span, format!("expected {usage}"));
                return skip_value(meta.input);
            }
            return meta.parse_nested_meta(|arg| {
                match arg.path.get_ident() {
                    Some(ident) if arg.input.is_empty() || arg.input.peek(Token![,]) => {
                        self.skip.push(ident.clone())
                    }
                    _ => {
                        cx.error_spanned_by(
                            &arg.path,
                            "expected an argument name, as in `skip(db, client)`",
                        );
                        skip_value(arg.input)?;
                    }
                }
                Ok(())
            });
        }

        if !meta.input.peek(Token![=]) {
            cx.error_at(span, format!("expected {usage}"));
            return skip_value(meta.input);
        }
        let value: Expr = meta.value()?.parse()?;
        let result = match name {
            "ttl" => duration(&value, name, Unit::Seconds).map(|secs| self.ttl_secs = Some(secs)),
            "lock_ttl" => duration(&value, name, Unit::Millis).map(|ms| {
                self.lock_ttl_ms = Some(Setting {
                    name: span,
                    value: ms,
                })
            }),
            "tags" => tags(&value).map(|tags| self.tags = Some(tags)),
            "key" => string(&value, usage)
                .and_then(|lit| {
                    if lit.value().is_empty() {
                        return Err(syn::Error::new_spanned(
                            &lit,
                            "`key` is empty; write a template such as `key = \"product:{id}\"`, or remove it to key by all arguments",
                        ));
                    }
                    Template::parse(lit, "key")
                })
                .map(|key| self.key = Some(key)),
            "cache" => {
                self.cache = Some(value);
                Ok(())
            }
            "cache_none" => bool(&value, name)
                .map(|value| self.cache_none = Some(Setting { name: span, value })),
            "lock" => {
                bool(&value, name).map(|value| self.lock = Some(Setting { name: span, value }))
            }
            "companions" => bool(&value, name).map(|value| self.companions = Some(value)),
            "crate" => krate(&value).map(|path| self.krate = Some(path)),
            "grace" => duration(&value, name, Unit::Seconds).map(|secs| {
                self.grace_secs = Some(Setting {
                    name: span,
                    value: secs,
                })
            }),
            "timeout" => duration(&value, name, Unit::Millis).map(|ms| {
                self.timeout_ms = Some(Setting {
                    name: span,
                    value: ms,
                })
            }),
            "refresh_ahead" => bool(&value, name)
                .map(|value| self.refresh_ahead = Some(Setting { name: span, value })),
            "local" => bool(&value, name).map(|value| self.local = Some(value)),
            "ttl_from" => function_path(&value, usage)
                .map(|value| self.ttl_from = Some(Setting { name: span, value })),
            "unless" => function_path(&value, usage)
                .map(|value| self.unless = Some(Setting { name: span, value })),
            "tags_from" => function_path(&value, usage)
                .map(|value| self.tags_from = Some(Setting { name: span, value })),
            "batch" => crate::batch::parse(&value).map(|ident| self.batch = Some(ident)),
            "codec" => string(&value, usage)
                .and_then(|lit| codec(&lit))
                .map(|codec| self.codec = Some(codec)),
            _ => unreachable!("option `{name}` listed in `OPTIONS` but not parsed"),
        };
        if let Err(error) = result {
            cx.push(error);
        }
        Ok(())
    }
}

/// The path of a function (`ttl_from = token_ttl`, `unless =
/// Listing::is_empty`), not a call or a closure.
fn function_path(value: &Expr, usage: &str) -> syn::Result<syn::ExprPath> {
    match value {
        Expr::Path(path) if path.attrs.is_empty() => Ok(path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "expected the path of a function, as in {usage}; a closure or a call is not accepted: name a function"
            ),
        )),
    }
}

fn path_to_string(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

/// Consumes the rest of an option (its `= value` or `(...)`) after an error,
/// up to the next top-level comma, so that the options after it are parsed.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

/// `600` (seconds) or `"10m"`, converted to `unit`; positive, no overflow.
fn duration(value: &Expr, option: &str, unit: Unit) -> syn::Result<u64> {
    let units = match unit {
        Unit::Seconds => "`s`, `m`, `h` or `d`",
        Unit::Millis => "`ms`, `s`, `m`, `h` or `d`",
    };
    let too_large = || {
        syn::Error::new_spanned(
            value,
            format!("`{option}` is too large; at most 100 years (`\"36500d\"`)"),
        )
    };
    let amount = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => {
            if !int.suffix().is_empty() {
                let suffix = int.suffix();
                let msg = if unit_factor(suffix, unit).is_some() {
                    format!("write a duration with a unit as a string: `{option} = \"{int}\"`")
                } else {
                    format!(
                        "expected a number of seconds or a string with a unit {units}, such as `{option} = \"10s\"`"
                    )
                };
                return Err(syn::Error::new_spanned(int, msg));
            }
            let secs: u64 = int.base10_parse().map_err(|_| too_large())?;
            match unit {
                Unit::Seconds => secs,
                Unit::Millis => secs.checked_mul(1000).ok_or_else(too_large)?,
            }
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => {
            let text = lit.value();
            if text.trim().is_empty() {
                return Err(syn::Error::new_spanned(
                    lit,
                    format!(
                        "`{option}` is empty; expected a number followed by a unit {units}, such as `\"10s\"` or `\"5m\"`"
                    ),
                ));
            }
            let digits = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (number, suffix) = text.split_at(digits);
            let Some(factor) = unit_factor(suffix, unit).filter(|_| !number.is_empty()) else {
                return Err(syn::Error::new_spanned(
                    lit,
                    format!(
                        "invalid `{option}` duration {text:?}; expected a whole number followed by a unit {units}, such as `\"10s\"` or `\"5m\"`"
                    ),
                ));
            };
            number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .ok_or_else(too_large)?
        }
        Expr::Lit(ExprLit {
            lit: Lit::Float(_), ..
        }) => {
            let whole = match unit {
                Unit::Seconds => "a whole number of seconds",
                Unit::Millis => "a whole number of seconds, or a string such as `\"500ms\"`",
            };
            return Err(syn::Error::new_spanned(
                value,
                format!("`{option}` must be {whole}"),
            ));
        }
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{option}` cannot be negative"),
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                format!(
                    "expected a number of seconds or a string with a unit {units}, such as `{option} = 600` or `{option} = \"10m\"`"
                ),
            ));
        }
    };
    // Redis rejects an expiry whose time, in milliseconds since 1970,
    // overflows a signed 64-bit integer; 100 years is the runtime's bound
    // for every duration (`cache_runtime`'s `MAX_DURATION`).
    const MAX_SECS: u64 = 36_500 * 24 * 60 * 60;
    let max = match unit {
        Unit::Seconds => MAX_SECS,
        Unit::Millis => MAX_SECS * 1000,
    };
    if amount > max {
        return Err(too_large());
    }
    if amount == 0 {
        let msg = match option {
            "ttl" => "`ttl` must be positive; remove it to use the cache's default time to live"
                .to_owned(),
            _ => format!("`{option}` must be positive"),
        };
        return Err(syn::Error::new_spanned(value, msg));
    }
    Ok(amount)
}

fn unit_factor(suffix: &str, unit: Unit) -> Option<u64> {
    let secs = match suffix {
        "ms" => return matches!(unit, Unit::Millis).then_some(1),
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return None,
    };
    Some(match unit {
        Unit::Seconds => secs,
        Unit::Millis => secs * 1000,
    })
}

fn tags(value: &Expr) -> syn::Result<Vec<Template>> {
    let usage = "`tags` expects an array of string literals, such as `tags = [\"products\", \"product:{id}\"]`";
    let Expr::Array(array) = value else {
        let msg = match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => {
                format!("{usage}; write `tags = [{:?}]`", lit.value())
            }
            _ => usage.to_owned(),
        };
        return Err(syn::Error::new_spanned(value, msg));
    };
    let mut templates = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for element in &array.elems {
        let parsed = match element {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Template::parse(lit.clone(), "tags"),
            _ => Err(syn::Error::new_spanned(
                element,
                "`tags` elements must be string literals, such as `\"products\"` or `\"product:{id}\"`",
            )),
        };
        match parsed {
            Ok(template) => templates.push(template),
            Err(error) => match &mut errors {
                Some(errors) => errors.combine(error),
                None => errors = Some(error),
            },
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(templates),
    }
}

fn string(value: &Expr, usage: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("expected a string literal, as in {usage}"),
        )),
    }
}

fn bool(value: &Expr, option: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(LitBool { value, .. }),
            ..
        }) => Ok(*value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{option}` expects `true` or `false`"),
        )),
    }
}

fn codec(lit: &LitStr) -> syn::Result<&'static str> {
    let name = lit.value();
    if let Some((_, runtime)) = CODECS.iter().find(|(codec, _)| *codec == name) {
        return Ok(runtime);
    }
    let names = CODECS.iter().map(|(codec, _)| *codec);
    let expected = names
        .clone()
        .map(|n| format!("`\"{n}\"`"))
        .collect::<Vec<_>>()
        .join(" or ");
    let msg = match suggest::closest(&name, names) {
        Some(close) => {
            format!("unknown codec `{name:?}`; did you mean `\"{close}\"`? (expected {expected})")
        }
        None => format!("unknown codec `{name:?}`; expected {expected}"),
    };
    Err(syn::Error::new_spanned(lit, msg))
}

fn krate(value: &Expr) -> syn::Result<Path> {
    let usage = "`crate` expects a path in a string literal, such as `crate = \"::cache_runtime\"`";
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit,
        _ => return Err(syn::Error::new_spanned(value, usage)),
    };
    lit.parse_with(Path::parse_mod_style).map_err(|_| {
        syn::Error::new_spanned(lit, format!("{:?} is not a path; {usage}", lit.value()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: &str) -> Result<u64, String> {
        let expr: Expr = syn::parse_str(value).unwrap();
        duration(&expr, "ttl", Unit::Seconds).map_err(|e| e.to_string())
    }

    fn millis(value: &str) -> Result<u64, String> {
        let expr: Expr = syn::parse_str(value).unwrap();
        duration(&expr, "lock_ttl", Unit::Millis).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("600"), Ok(600));
        assert_eq!(seconds(r#""90s""#), Ok(90));
        assert_eq!(seconds(r#""10m""#), Ok(600));
        assert_eq!(seconds(r#""1h""#), Ok(3600));
        assert_eq!(seconds(r#""1d""#), Ok(86400));
        assert_eq!(millis("10"), Ok(10_000));
        assert_eq!(millis(r#""500ms""#), Ok(500));
        assert_eq!(millis(r#""2s""#), Ok(2000));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "0",
            "-5",
            "1.5",
            r#""""#,
            r#""0s""#,
            r#""10""#,
            r#""s""#,
            r#""10 m""#,
            r#""10x""#,
            r#""500ms""#,
            "10m",
            "99999999999999999999",
            "9223372036854776",
            "x",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert!(seconds(r#""36500d""#).is_ok());
        assert!(seconds(r#""36501d""#).is_err());
        assert!(millis(r#""36500d""#).is_ok());
        assert!(millis(r#""36501d""#).is_err());
    }

    #[test]
    fn all_problems_are_reported() {
        let cx = Ctxt::new();
        let args = parse(
            &cx,
            quote::quote!(
                ttl = 0,
                tll = 1,
                ttl = 5,
                tags = [1, "a{"],
                lock = false,
                lock_ttl = 1,
                skip(a, b)
            ),
        );
        assert_eq!(args.skip.len(), 2);
        let errors = cx.check().unwrap_err();
        assert_eq!(errors.into_iter().count(), 6);
    }
}
