//! Removing what a gateway instance left on the engine, through the docker CLI (no runtime is
//! needed for that, so it works from `Drop`). Shared with the `runs` benchmark, which includes
//! this file by its path.

/// Removes every container and volume labelled with a gateway instance; how many containers
/// and volumes were found.
pub(crate) fn remove_instance_objects(instance: &str) -> (usize, usize) {
    let filter = format!("label=vre.instance={instance}");
    let list = |args: &[&str]| -> Vec<String> {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = list(&["ps", "-aq", "--filter", &filter]);
    if !containers.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&containers)
            .output();
    }
    let volumes = list(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&volumes)
            .output();
    }
    (containers.len(), volumes.len())
}
