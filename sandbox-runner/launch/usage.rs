//! The bytes a folder takes on disk: the blocks of everything below it, walked without
//! following links and reading metadata only, never content. Shared by the backend (walking an
//! output volume on the engine's host) and the launcher's `--usage` mode (walking it inside a
//! measuring container, where the host's path cannot be read).

use std::path::Path;

/// The root itself must be readable (a silent 0 would switch a quota off); entries that vanish
/// or cannot be read during the walk are passed over.
pub(crate) fn usage(root: &Path) -> std::io::Result<u64> {
    std::fs::read_dir(root)?;
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            }
            total += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
        }
    }
    Ok(total)
}
