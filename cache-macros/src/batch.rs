//! `batch = ids`: parses the option and checks it against the function
//! (its generation is in `expand_batch.rs`).

use syn::{Expr, Ident};

use crate::args::Args;
use crate::ctxt::Ctxt;
use crate::item::{Func, RetKind};
use crate::suggest;
use crate::template::name_of;

/// The argument `batch = ids` names.
pub(crate) fn parse(value: &Expr) -> syn::Result<Ident> {
    if let Expr::Path(path) = value
        && path.qself.is_none()
        && let Some(ident) = path.path.get_ident()
    {
        return Ok(ident.clone());
    }
    Err(syn::Error::new_spanned(
        value,
        "expected the name of the collection argument, as in `batch = ids`",
    ))
}

/// The batch argument: a parameter, not skipped; the function returns a
/// map (in a `Result` or not); no refresh options.
pub(crate) fn check(cx: &Ctxt, args: &Args, func: &Func) {
    let Some(batch) = &args.batch else {
        return;
    };
    let name = name_of(batch);
    let names: Vec<String> = func.args.iter().map(|arg| name_of(&arg.ident)).collect();
    match func.args.iter().find(|arg| name_of(&arg.ident) == name) {
        None => {
            let mut msg =
                format!("`batch` names `{name}`, which is not an argument of this function");
            if let Some(close) = suggest::closest(&name, names.iter().map(String::as_str)) {
                msg += &format!("; did you mean `{close}`?");
            } else if !names.is_empty() {
                msg += &format!(
                    "; the arguments are {}",
                    suggest::list(names.iter().map(String::as_str))
                );
            }
            cx.error_spanned_by(batch, msg);
        }
        Some(arg) if !arg.in_key => cx.error_spanned_by(
            batch,
            format!(
                "the `batch` argument `{name}` is part of each item's key; remove it from `skip`"
            ),
        ),
        Some(_) => {}
    }
    for (option, given) in [
        ("grace", args.grace_secs.is_some()),
        ("refresh_ahead", args.refresh_ahead.is_some()),
        ("timeout", args.timeout_ms.is_some()),
        ("ttl_from", args.ttl_from.is_some()),
        ("unless", args.unless.is_some()),
        ("tags_from", args.tags_from.is_some()),
    ] {
        if given {
            cx.error_spanned_by(
                batch,
                format!("`batch` cannot be combined with `{option}`; remove one of them"),
            );
        }
    }
    if matches!(func.ret.kind, RetKind::Option | RetKind::ResultOption) {
        cx.error_spanned_by(
            &func.ret.ty,
            "a `batch` function returns a map from item to value (`HashMap` or `BTreeMap`, in a `Result` or not), not an `Option`; an item the body leaves out of the map is absent",
        );
    }
}
