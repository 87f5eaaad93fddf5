//! Support items for the code that `#[cached]` generates.
//!
//! **Not public API.** Everything here may change in any release; only the
//! macro may name these items. The generated code refers to nothing but
//! `::cache_runtime::__private::*` (or `<crate>::__private::*` with
//! `#[cached(crate = "...")]`), so that a user's own imports never change
//! what the expansion means.

pub use ::core::concat;
pub use ::core::future::Future;
pub use ::core::module_path;
pub use ::core::option::Option::{self, None, Some};
pub use ::core::result::Result;
pub use ::std::format;
pub use ::std::string::String;
pub use ::std::vec;
pub use ::std::vec::Vec;

pub use crate::Cache;
pub use crate::execute::execute;
pub use crate::handle::{AsCache, default_cache};
pub use crate::invalidate::{invalidate_call, invalidate_function};
pub use crate::key::{ArgsDigest, KeyPart};
pub use crate::outcome::{OkOnly, Plain, SomeOnly, Strategy};
pub use crate::spec::Spec;

/// Fails to compile, at the argument's type, when an argument that is part
/// of the key is not `Serialize`.
#[inline(always)]
pub fn assert_key_arg<T: ?Sized + KeyArg>() {}

/// Fails to compile, at the return type, when the cached value is not
/// `Serialize + DeserializeOwned`.
#[inline(always)]
pub fn assert_cacheable<T: CacheableValue>() {}

/// Fails to compile, at the template, when an interpolated argument is not
/// `Display`.
#[inline(always)]
pub fn assert_display<T: ?Sized + ::core::fmt::Display>(_: &T) {}

/// An argument that can be part of a cache key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key because it does not implement `Serialize`",
    label = "this argument is hashed into the cache key",
    note = "derive `serde::Serialize` for it, or leave the argument out of the key with `#[cached(skip(name))]`"
)]
pub trait KeyArg {}
impl<T: ?Sized + ::serde::Serialize> KeyArg for T {}

/// A value that can be stored in the cache.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached because it does not implement both `Serialize` and `DeserializeOwned`",
    label = "the cached value is stored as JSON",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (a type that borrows, such as `&str`, cannot be read back from the cache)"
)]
pub trait CacheableValue {}
impl<T: ::serde::Serialize + ::serde::de::DeserializeOwned> CacheableValue for T {}
