//! The paths of a sandbox's output folder that egress may name, checked the same way by the
//! gateway (before it asks) and by the backend (before it reads).

use crate::Error;

/// `path` as a path of the output folder: relative to `/vre/output`, `/`-separated, with no
/// `.` or empty components and no trailing slash (`./tables//counts.csv` is
/// `tables/counts.csv`). Refused ([`Error::InvalidPath`], naming the path and why): a path that
/// is empty or names the folder itself, an absolute one, one with a `..` component, a NUL or a
/// backslash.
pub fn output_path(path: &str) -> Result<String, Error> {
    let refuse = |why: &str| {
        Err(Error::InvalidPath(format!(
            "`{}` is not a path of the output folder: {why}",
            path.escape_debug()
        )))
    };
    if path.contains('\0') {
        return refuse("it holds a NUL byte");
    }
    if path.contains('\\') {
        return refuse("it holds a backslash (paths are separated by `/`)");
    }
    if path.starts_with('/') {
        return refuse("it is absolute (paths are relative to /vre/output)");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse("it has a `..` component"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return refuse("it names no file or folder in it");
    }
    Ok(parts.join("/"))
}

/// The paths asked for, each checked by [`output_path`], in order, without duplicates and
/// without paths inside another one asked for (that folder's archive holds them already).
pub fn output_paths(paths: &[String]) -> Result<Vec<String>, Error> {
    if paths.is_empty() {
        return Err(Error::InvalidPath(
            "no path of the output folder was asked for".into(),
        ));
    }
    let mut checked = paths
        .iter()
        .map(|p| output_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    checked.sort();
    checked.dedup();
    // Sorted, a folder comes before everything inside it (`a` < `a/…`), though not always
    // right before (`a` < `a-b` < `a/c`): compare with every path kept.
    let mut kept: Vec<String> = Vec::with_capacity(checked.len());
    for p in checked {
        let inside = kept.iter().any(|k| {
            p.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if !inside {
            kept.push(p);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        for (given, want) in [
            ("tables", "tables"),
            ("tables/counts.csv", "tables/counts.csv"),
            ("./tables//counts.csv", "tables/counts.csv"),
            ("tables/", "tables"),
            ("a/./b/.", "a/b"),
            ("..a/b..", "..a/b.."),
        ] {
            assert_eq!(output_path(given).unwrap(), want, "{given}");
        }
        for (given, why) in [
            ("", "names no file"),
            (".", "names no file"),
            ("./", "names no file"),
            ("//", "absolute"),
            ("/etc/passwd", "absolute"),
            ("/vre/output/a", "absolute"),
            ("..", "`..`"),
            ("a/../b", "`..`"),
            ("a/..", "`..`"),
            ("a\0b", "NUL"),
            ("a\\b", "backslash"),
            ("..\\a", "backslash"),
        ] {
            let e = output_path(given).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidPath(m) if m.contains(why)),
                "{given:?}: {e}"
            );
        }
    }

    #[test]
    fn duplicates_and_paths_inside_another_are_collapsed() {
        let asked =
            |ps: &[&str]| output_paths(&ps.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert_eq!(
            asked(&["b", "a/x", "a", "./a/", "a-b", "a/c/d", "ab", "b/"]).unwrap(),
            ["a", "a-b", "ab", "b"]
        );
        assert_eq!(
            asked(&["t/x.csv", "t/y.csv", "t/x.csv"]).unwrap(),
            ["t/x.csv", "t/y.csv"]
        );
        assert!(asked(&[]).is_err());
        assert!(asked(&["ok", "../no"]).is_err());
    }
}
