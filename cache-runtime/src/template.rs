//! How an argument is written into a `key = "..."` or `tags = [...]`
//! template: readable when it is ordinary, escaped when it could be taken
//! for the template's own text, and short whatever its size.
//!
//! - Letters, digits, `-`, `_` and `.` are written as they are, so
//!   `product:{id}` renders `product:42` and `user:{name}` renders
//!   `user:ada`.
//! - Every other byte is written `%XX` (its UTF-8 bytes in hex), so a value
//!   never contains the template's separators: with `user:{org}:{name}`,
//!   ("a:b", "c") renders `user:a%3Ab:c` and ("a", "b:c") `user:a:b%3Ac`.
//!   (The macro requires placeholders to be separated by such a character.)
//! - A value whose written form would exceed 64 bytes is written as `~` and
//!   the first 128 bits of its BLAKE3 hash in hex (`~` is never written
//!   as is, so this form never equals an escaped value): a 5 MiB argument
//!   makes a key of a few dozen bytes.
//!
//! To name such a tag yourself (for [`Cache::invalidate_tag`]), render its
//! arguments with [`template_value`].
//!
//! [`Cache::invalidate_tag`]: crate::Cache::invalidate_tag

use std::fmt::{self, Display, Write};

/// The longest an argument is written before it is hashed instead.
pub const MAX_VALUE_LEN: usize = 64;

/// An argument as a template writes it: `template_value(&"a:b")` is
/// `"a%3Ab"`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::Error> {
/// use cache_runtime::{cached, template_value, Cache};
///
/// #[cached(tags = ["category:{category}"])]
/// async fn list(category: String) -> Vec<u64> { vec![1, 2] }
///
/// let cache = Cache::builder().memory().build()?;
/// cache_runtime::set_default(cache.clone());
/// list("Home & Garden".into()).await;
/// let tag = format!("category:{}", template_value(&"Home & Garden"));
/// assert_eq!(tag, "category:Home%20%26%20Garden");
/// cache.invalidate_tag(tag).await?;
/// # Ok(()) }
/// ```
pub fn template_value<T: Display>(value: &T) -> String {
    TemplateValue(value).to_string()
}

/// A value interpolated into a key or tag template.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be interpolated into a cache key or tag because it does not implement `Display`",
    label = "this template writes the argument with `Display`",
    note = "implement `std::fmt::Display` for it, or interpolate a field or method that has it"
)]
pub trait TemplateArg: Display {}
impl<T: ?Sized + Display> TemplateArg for T {}

/// Writes its value as a template does.
pub struct TemplateValue<'a>(&'a dyn Display);

impl<'a> TemplateValue<'a> {
    /// The value of an argument (the one place a missing `Display` is
    /// reported).
    pub fn new<T: TemplateArg>(value: &'a T) -> Self {
        TemplateValue(value)
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

impl Display for TemplateValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.0.to_string();
        let escaped_len: usize = raw.bytes().map(|b| if is_plain(b) { 1 } else { 3 }).sum();
        if escaped_len > MAX_VALUE_LEN {
            let digest = crate::ids::first16(&blake3::hash(raw.as_bytes()));
            f.write_char('~')?;
            return f.write_str(crate::ids::hex16(&digest).as_str());
        }
        if escaped_len == raw.len() {
            return f.write_str(&raw);
        }
        for b in raw.bytes() {
            if is_plain(b) {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::template_value as v;

    #[test]
    fn ordinary_values_stay_readable() {
        assert_eq!(v(&42), "42");
        assert_eq!(v(&"ada"), "ada");
        assert_eq!(v(&"550e8400-e29b_41d4.a716"), "550e8400-e29b_41d4.a716");
        assert_eq!(v(&-1.5), "-1.5");
    }

    #[test]
    fn separators_are_escaped_so_values_stay_apart() {
        assert_eq!(v(&"a:b"), "a%3Ab");
        assert_eq!(v(&"50%"), "50%25");
        assert_eq!(v(&"é"), "%C3%A9");
        let (a, b) = (
            format!("{}:{}", v(&"a:b"), v(&"c")),
            format!("{}:{}", v(&"a"), v(&"b:c")),
        );
        assert_ne!(a, b);
        assert_ne!(v(&"~x"), "~x");
    }

    #[test]
    fn long_values_are_hashed_short() {
        let big = "x".repeat(5 << 20);
        let written = v(&big);
        assert_eq!(written.len(), 33);
        assert!(written.starts_with('~'));
        assert_ne!(written, v(&"x".repeat((5 << 20) + 1)));
        assert_eq!(v(&"y".repeat(64)), "y".repeat(64));
        assert!(v(&"y".repeat(65)).starts_with('~'));
        assert!(
            v(&":".repeat(22)).starts_with('~'),
            "escaped form over the limit"
        );
    }
}
