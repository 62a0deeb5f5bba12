//! "Did you mean ...?" for mistyped names (classifiers, models): the known
//! name nearest by edit distance, when it is near enough to be a typo.

/// The known name nearest to `s` by edit distance, when it is near enough to be a typo.
pub fn closest<'a>(s: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(s, k), *k))
        .min()
        .filter(|(d, k)| *d <= 3.max(k.len() / 3) && *d < k.len())
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_not() {
        let known = ["knn", "mlp", "residue-knn", "unirep1900"];
        assert_eq!(closest("residue-kn", &known), Some("residue-knn"));
        assert_eq!(closest("unirep190", &known), Some("unirep1900"));
        assert_eq!(closest("xyzzyplugh", &known), None);
    }
}
