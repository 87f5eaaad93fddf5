//! "Did you mean ...?" for misspelt option and argument names.

/// The candidate closest to `name`, if one is close enough to be a likely
/// typo: at most one edit per three characters, as rustc does.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let name = name.to_lowercase();
    let limit = name.chars().count().max(3) / 3;
    candidates
        .into_iter()
        .map(|candidate| (levenshtein(&name, &candidate.to_lowercase()), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// `a`, `b`, `c` (each name in backticks, comma separated).
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The number of single-character insertions, deletions and substitutions
/// that turn `a` into `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("ttl", "ttl"), 0);
        assert_eq!(levenshtein("tll", "ttl"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let options = ["ttl", "tags", "key", "skip", "cache_none", "lock_ttl"];
        assert_eq!(closest("tll", options), Some("ttl"));
        assert_eq!(closest("TTL", options), Some("ttl"));
        assert_eq!(closest("tag", options), Some("tags"));
        assert_eq!(closest("cachenone", options), Some("cache_none"));
        assert_eq!(closest("lockttl", options), Some("lock_ttl"));
        assert_eq!(closest("expiry", options), None);
        assert_eq!(closest("x", options), None);
    }
}
