//! Which programs a run may start: a project's command policy, `approved` or `any`.
//!
//! Under `approved`, a run's program is one of:
//! - an executable inside a staged, approved ingress: a path under `/vre/ingress/<id>/` of an
//!   application staged into the sandbox, with any arguments (they are the reviewed program's
//!   input);
//! - a command the operator allowed for the image (`vre image allow IMAGE --command ls`), named
//!   bare (looked up on the image's `PATH`) or by its path in a system folder (`/usr/bin/ls`);
//! - an interpreter the operator allowed (`--interpreter python3`) followed by a script inside a
//!   staged ingress. Options before the script are read with what is known of each interpreter
//!   ([`syntax::SYNTAXES`]): an option that takes code inline (`sh -c`, `python3 -c`, `Rscript -e`,
//!   `perl -e`, `node -e`), reads the program from standard input (`python3 -`, `sh -s`) or loads
//!   a module found on a search path that includes the working directory (`python3 -m`,
//!   `perl -M`, `node -r`) is refused; an option the rule does not know is refused too, since one
//!   that takes a value would make the rule read that value as the script. An interpreter it has
//!   no syntax for takes no options: the script comes first.
//!
//! Names known to run code given in their arguments are interpreters whichever list the operator
//! put them in: `sh -c` is not allowed by listing `sh` as a command. `awk` and `sed` programs are
//! code too: they run only from a script (`awk -f /vre/ingress/…`). `env`, `nice`, `nohup`,
//! `setsid`, `time` and `timeout`, once allowed, run the command that follows them, which must
//! pass this rule in turn (`env` may not set variables: `BASH_ENV`, `LD_PRELOAD` or
//! `PYTHONPATH` make a reviewed program load other code). Other programs that start programs
//! named in their arguments or input (`xargs`, `busybox`, `sudo`, `find -exec`, …) are refused
//! even when allowed: the rule cannot follow them.
//!
//! Nothing under `/vre/work`, `/vre/output`, `/tmp` or `/dev/shm` may be the program or the
//! script: they are writable, so nobody reviewed what is there when the run starts.
//!
//! Paths are read as the run will resolve them: relative to the working directory, `/vre/work`
//! (so `./run.sh` or `bin/tool` is a work path); `//` and `.` segments collapse. A path with a
//! `..` segment is refused outright: whether `a/..` is `.` depends on whether `a` is a link,
//! which a pure rule cannot know, and below `/vre/work` an analyst can make links. Below a
//! staged ingress there are none, and the gateway must keep it so: archives with links are
//! refused at upload (`archive::rules`), staging writes only regular files and folders, owned by
//! root and read-only, on a volume mounted read-only, so a path there names exactly what the
//! committee saw. `/proc`, `/dev` and `/sys` are refused (`/proc/self/root/…` names any file).
//! An approved executable is trusted with its arguments: an ingress that brings an interpreter
//! of its own (a `busybox`, a `python`) makes its arguments code, which is why reviewers are
//! shown native executables (`archive::checks`).
//!
//! What the rule cannot see, and the gateway must keep true: a bare name resolves through the
//! image's `PATH`, which must hold no writable folder, and analysts cannot set a run's
//! environment (`PYTHONPATH`, `BASH_ENV`, `LD_PRELOAD`, `PERL5OPT`, `NODE_OPTIONS` would each
//! load unreviewed code). Some interpreters read startup files from the working directory (R's
//! `.Rprofile`): operators allow `R` and `Rscript` with that in mind, or analysts pass
//! `--vanilla`. A command the operator allows is trusted with its arguments: the rule knows the
//! common interpreters and launchers, not every program that can run code given in an option
//! (`tar --to-command`, `git -c`), so operators allow only programs that need no such options.
//! Under `any`, the rule checks nothing but that there is a command.

use std::fmt;

use self::syntax::{interpreted, syntax_of};

pub mod syntax;

/// A project's command policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CommandPolicy {
    /// Only reviewed programs, and commands the operator allowed for the image.
    #[default]
    Approved,
    /// Any command the image has (for projects whose committee agreed to it).
    Any,
}

impl CommandPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandPolicy::Approved => "approved",
            CommandPolicy::Any => "any",
        }
    }
}

impl fmt::Display for CommandPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command policy that is neither `approved` nor `any`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown command policy `{0}` (expected approved or any)")]
pub struct UnknownCommandPolicy(pub String);

impl std::str::FromStr for CommandPolicy {
    type Err = UnknownCommandPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approved" => Ok(CommandPolicy::Approved),
            "any" => Ok(CommandPolicy::Any),
            other => Err(UnknownCommandPolicy(other.to_owned())),
        }
    }
}

/// What the operator allowed for an image: command and interpreter names (`ls`, `python3`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageCommands<'a> {
    pub commands: &'a [String],
    pub interpreters: &'a [String],
}

/// The rule a refused command broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandRule {
    /// No command, or an empty program name.
    EmptyCommand,
    /// Code given in the arguments or read from standard input.
    InlineCode,
    /// A program or script that is not in a staged, approved ingress.
    NotReviewed,
    /// A program or script in a writable place.
    WritableProgram,
    /// A bare command the operator did not allow for the image.
    CommandNotAllowed,
    /// An interpreter without a script.
    NoScript,
    /// An option the rule does not know to be safe.
    OptionNotAllowed,
    /// A path with `..`, a NUL, or in `/proc`, `/dev` or `/sys`.
    UnsafePath,
    /// A program that starts other programs in ways the rule cannot follow.
    CommandRunner,
}

impl CommandRule {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandRule::EmptyCommand => "empty_command",
            CommandRule::InlineCode => "inline_code",
            CommandRule::NotReviewed => "not_reviewed",
            CommandRule::WritableProgram => "writable_program",
            CommandRule::CommandNotAllowed => "command_not_allowed",
            CommandRule::NoScript => "no_script",
            CommandRule::OptionNotAllowed => "option_not_allowed",
            CommandRule::UnsafePath => "unsafe_path",
            CommandRule::CommandRunner => "command_runner",
        }
    }
}

impl fmt::Display for CommandRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command: the rule it broke, and what to do instead, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandRefusal {
    pub rule: CommandRule,
    pub message: String,
}

fn refuse<T>(rule: CommandRule, message: impl Into<String>) -> Result<T, CommandRefusal> {
    Err(CommandRefusal {
        rule,
        message: message.into(),
    })
}

/// A file of a staged ingress: the application it came with, and its normalised path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reviewed {
    pub application: String,
    pub path: String,
}

/// Why a command may run (for the run's audit event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The project's policy is `any`.
    Unchecked,
    /// An executable of a staged ingress.
    Reviewed(Reviewed),
    /// A command the operator allowed.
    Command { name: String },
    /// An allowed interpreter with its scripts (`awk` may take several).
    Interpreted {
        interpreter: String,
        scripts: Vec<Reviewed>,
    },
    /// An allowed launcher (`env`, `nice`, …) and the program it starts.
    Launched {
        launcher: String,
        program: Box<Program>,
    },
}

/// Where runs work and what that means for programs.
pub const WORK_DIR: &str = "/vre/work";
pub const INGRESS_DIR: &str = "/vre/ingress";

/// Writable in every run: what is there was not reviewed.
const WRITABLE: &[&str] = &["/vre/work", "/vre/output", "/tmp", "/dev/shm", "/var/tmp"];
/// Pseudo file systems whose paths can name any file (`/proc/self/root/…`, `/dev/fd/…`).
const PSEUDO: &[&str] = &["/proc", "/dev", "/sys"];
/// System folders of the image (its read-only root), where an allowed command may be named by
/// its path.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];
/// Launchers that run the command following them, which must pass the rule in turn.
const LAUNCHERS: &[&str] = &["env", "nice", "nohup", "setsid", "time", "timeout"];
/// Programs that start programs (or run code) named in their arguments or input in ways the
/// rule cannot follow: refused even when allowed.
const RUNNERS: &[&str] = &[
    "xargs", "busybox", "toybox", "sudo", "su", "doas", "runuser", "chroot", "unshare", "nsenter",
    "strace", "ltrace", "gdb", "watch", "flock", "stdbuf", "ionice", "taskset", "chrt", "script",
    "parallel", "make", "ld.so", "exec", "eval", "command", "builtin", "source",
];
/// Options of `find` that run commands or write files.
const FIND_EXEC: &[&str] = &[
    "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls", "-delete",
];
/// How far launchers may nest (`env nice timeout 10 prog`).
const MAX_DEPTH: usize = 4;

/// A path as a run resolves it lexically: relative to [`WORK_DIR`], `//` and `.` collapsed.
/// Refused (`unsafe_path`) with a `..` segment or a NUL.
pub fn normalise(path: &str) -> Result<String, CommandRefusal> {
    if path.contains('\0') {
        return refuse(CommandRule::UnsafePath, "a path may not contain a NUL byte");
    }
    let mut out = String::new();
    let full = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{WORK_DIR}/{path}")
    };
    for seg in full.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                return refuse(
                    CommandRule::UnsafePath,
                    format!(
                        "`{path}` has a `..` segment; name the program by its plain path under /vre/ingress/<application>/"
                    ),
                );
            }
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn under(path: &str, root: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Where a program or script file is, as given in `argv` (`what`: "the program", "the script").
fn reviewed_file(given: &str, what: &str, staged: &[String]) -> Result<Reviewed, CommandRefusal> {
    let path = normalise(given)?;
    if let Some(rest) = path
        .strip_prefix(INGRESS_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (app, file) = rest.split_once('/').unwrap_or((rest, ""));
        if !staged.iter().any(|s| s == app) {
            return refuse(
                CommandRule::NotReviewed,
                format!(
                    "{what} `{given}` is in ingress `{app}`, which is not staged into this sandbox; stage the approved application first"
                ),
            );
        }
        if file.is_empty() {
            return refuse(
                CommandRule::NotReviewed,
                format!("{what} `{given}` is the ingress folder itself; name a file in it"),
            );
        }
        return Ok(Reviewed {
            application: app.to_owned(),
            path,
        });
    }
    if let Some(root) = WRITABLE.iter().find(|r| under(&path, r)) {
        return refuse(
            CommandRule::WritableProgram,
            format!(
                "{what} `{given}` is under {root}, which runs can write: nobody reviewed it; submit it as an ingress application and run it from /vre/ingress/<application>/"
            ),
        );
    }
    if let Some(root) = PSEUDO.iter().find(|r| under(&path, r)) {
        return refuse(
            CommandRule::UnsafePath,
            format!("{what} `{given}` is under {root}, whose paths can name any file"),
        );
    }
    refuse(
        CommandRule::NotReviewed,
        format!(
            "{what} `{given}` is not in an approved ingress; programs and scripts run from /vre/ingress/<application>/ once the committee approved them"
        ),
    )
}

/// Decides whether a run may start `argv` under `policy`, in a sandbox of an image with these
/// allowed commands and these staged ingress applications.
pub fn check(
    policy: CommandPolicy,
    argv: &[String],
    image: &ImageCommands<'_>,
    staged: &[String],
) -> Result<Program, CommandRefusal> {
    if argv.first().is_none_or(|a| a.is_empty()) {
        return refuse(CommandRule::EmptyCommand, "a run needs a command");
    }
    match policy {
        CommandPolicy::Any => Ok(Program::Unchecked),
        CommandPolicy::Approved => check_approved(argv, image, staged, 0),
    }
}

fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|c| c == name)
}

fn check_approved(
    argv: &[String],
    image: &ImageCommands<'_>,
    staged: &[String],
    depth: usize,
) -> Result<Program, CommandRefusal> {
    let Some(given) = argv.first().filter(|a| !a.is_empty()) else {
        return refuse(CommandRule::EmptyCommand, "a run needs a command");
    };
    let args = &argv[1..];
    let name = if given.contains('/') {
        let path = normalise(given)?;
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
        let system = SYSTEM_DIRS.contains(&dir);
        if !(system && (listed(image.commands, base) || listed(image.interpreters, base))) {
            return reviewed_file(given, "the program", staged).map(Program::Reviewed);
        }
        base.to_owned()
    } else {
        given.clone()
    };
    let allowed_command = listed(image.commands, &name);
    let allowed_interpreter = listed(image.interpreters, &name);
    if !allowed_command && !allowed_interpreter {
        return refuse(
            CommandRule::CommandNotAllowed,
            format!(
                "`{name}` is not a command the operator allowed for this image; run a program from an approved ingress, or ask an operator to allow it"
            ),
        );
    }
    if RUNNERS.contains(&name.as_str()) || name.starts_with("ld-linux") {
        return refuse(
            CommandRule::CommandRunner,
            format!(
                "`{name}` starts programs named in its arguments or input, which this rule cannot follow; run the program itself"
            ),
        );
    }
    if let Some(syntax) = syntax_of(&name) {
        return interpreted(&name, syntax, args, staged);
    }
    if allowed_interpreter {
        // An interpreter the rule knows nothing of takes no options: the script comes first.
        let Some(script) = args.first() else {
            return refuse(
                CommandRule::NoScript,
                format!(
                    "`{name}` needs a script from an approved ingress: {name} /vre/ingress/<application>/<script>"
                ),
            );
        };
        if script.starts_with('-') {
            return refuse(
                CommandRule::OptionNotAllowed,
                format!(
                    "`{name}` takes no options before its script under the `approved` policy: {name} /vre/ingress/<application>/<script>"
                ),
            );
        }
        return Ok(Program::Interpreted {
            interpreter: name,
            scripts: vec![reviewed_file(script, "the script", staged)?],
        });
    }
    if LAUNCHERS.contains(&name.as_str()) {
        return launched(&name, args, image, staged, depth);
    }
    let exec = args.iter().find(|a| FIND_EXEC.contains(&a.as_str()));
    if let (true, Some(opt)) = (name == "find", exec) {
        return refuse(
            CommandRule::InlineCode,
            format!(
                "`find {opt}` runs commands or writes files; list what you need and run a reviewed script on it"
            ),
        );
    }
    Ok(Program::Command { name })
}

fn launched(
    name: &str,
    args: &[String],
    image: &ImageCommands<'_>,
    staged: &[String],
    depth: usize,
) -> Result<Program, CommandRefusal> {
    if depth >= MAX_DEPTH {
        return refuse(
            CommandRule::CommandRunner,
            format!("`{name}` is nested more than {MAX_DEPTH} launchers deep"),
        );
    }
    let option = |what: &str, why: &str| {
        refuse::<Program>(
            CommandRule::OptionNotAllowed,
            format!("`{name} {what}`: {why}"),
        )
    };
    let mut rest = args;
    match name {
        "nice" => {
            if let Some(first) = rest.first() {
                if first == "-n" {
                    if rest.get(1).is_none_or(|n| n.parse::<i32>().is_err()) {
                        return option("-n", "give a number: nice -n 10 COMMAND");
                    }
                    rest = &rest[2..];
                } else if first.starts_with('-') {
                    return option(first, "the only option allowed is -n NUMBER");
                }
            }
        }
        "timeout" => {
            let duration = |d: &str| {
                let d = d.trim_end_matches(['s', 'm', 'h', 'd']);
                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            };
            match rest.first() {
                Some(d) if duration(d) => rest = &rest[1..],
                Some(other) => {
                    return option(other, "give only a duration: timeout 10m COMMAND");
                }
                None => {}
            }
        }
        _ => {
            if let Some(first) = rest.first() {
                if first.starts_with('-') {
                    return option(first, "no options are allowed here");
                }
                if name == "env" && first.contains('=') {
                    return option(
                        first,
                        "env may not set variables (BASH_ENV, LD_PRELOAD or PYTHONPATH would make a reviewed program load other code)",
                    );
                }
            }
        }
    }
    if rest.is_empty() {
        return refuse(
            CommandRule::EmptyCommand,
            format!("`{name}` needs a command to run"),
        );
    }
    let program = check_approved(rest, image, staged, depth + 1)?;
    Ok(Program::Launched {
        launcher: name.to_owned(),
        program: Box::new(program),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The image of every case: `ls`, `cat`, `awk` (as a command: still refused inline), `sh`
    /// (listed as a command by mistake), `env`, `nice`, `xargs`, `find`; interpreters `python3`,
    /// `Rscript`, `bash`, `perl`, `node`, `sed`, `julia` (unknown syntax).
    fn decide(argv: &[&str]) -> Result<Program, CommandRefusal> {
        let commands = strings(&[
            "ls", "cat", "awk", "sh", "env", "nice", "timeout", "xargs", "find",
        ]);
        let interpreters = strings(&[
            "python3", "Rscript", "bash", "perl", "node", "sed", "julia", "gawk",
        ]);
        let image = ImageCommands {
            commands: &commands,
            interpreters: &interpreters,
        };
        let staged = strings(&["app-a", "app-b"]);
        check(CommandPolicy::Approved, &strings(argv), &image, &staged)
    }

    #[test]
    fn the_command_rule_table() {
        use CommandRule::*;
        let ok: Option<CommandRule> = None;
        #[rustfmt::skip]
        let table: &[(&[&str], Option<CommandRule>)] = &[
            // Reviewed programs and allowed commands.
            (&["/vre/ingress/app-a/run.sh"], ok),
            (&["/vre/ingress/app-a/bin/tool", "-c", "anything"], ok),
            (&["//vre/./ingress//app-b/./x"], ok),
            (&["ls", "-la", "/vre/work"], ok),
            (&["/usr/bin/ls"], ok),
            (&["/bin/cat", "/vre/data/d1/x.csv"], ok),
            (&["python3", "/vre/ingress/app-a/x.py", "-c", "arg"], ok),
            (&["python3", "-u", "/vre/ingress/app-a/x.py"], ok),
            (&["python3", "-uB", "-W", "ignore", "/vre/ingress/app-a/x.py"], ok),
            (&["python3", "-Werror", "/vre/ingress/app-a/x.py"], ok),
            (&["python3", "--", "/vre/ingress/app-a/x.py"], ok),
            // `-c` is -W's value here, as Python reads it: no code, the script runs.
            (&["python3", "-W", "-c", "/vre/ingress/app-a/x.py"], ok),
            (&["/usr/bin/python3", "/vre/ingress/app-a/x.py"], ok),
            (&["bash", "-eu", "-o", "pipefail", "/vre/ingress/app-a/x.sh"], ok),
            (&["sh", "/vre/ingress/app-a/x.sh"], ok),
            (&["Rscript", "--vanilla", "/vre/ingress/app-b/a.R"], ok),
            (&["node", "--no-warnings", "/vre/ingress/app-a/m.js"], ok),
            (&["gawk", "-F", ",", "-f", "/vre/ingress/app-a/s.awk", "in.csv"], ok),
            (&["awk", "-f", "/vre/ingress/app-a/s.awk", "in.csv"], ok),
            (&["sed", "-n", "-f", "/vre/ingress/app-a/s.sed", "/vre/data/x"], ok),
            (&["julia", "/vre/ingress/app-a/x.jl", "--threads", "4"], ok),
            (&["env", "python3", "/vre/ingress/app-a/x.py"], ok),
            (&["nice", "-n", "5", "timeout", "10m", "/vre/ingress/app-a/x"], ok),
            (&["find", "/vre/output", "-name", "*.csv"], ok),
            // Inline code.
            (&["sh", "-c", "echo hi"], Some(InlineCode)),
            (&["bash", "-ec", "id"], Some(InlineCode)),
            (&["bash", "-s"], Some(InlineCode)),
            (&["python3", "-c", "print(1)"], Some(InlineCode)),
            (&["python3", "-uc", "print(1)"], Some(InlineCode)),
            (&["python3", "-"], Some(InlineCode)),
            (&["Rscript", "-e", "1"], Some(InlineCode)),
            (&["perl", "-e", "print 1"], Some(InlineCode)),
            (&["perl", "-wE", "say 1"], Some(InlineCode)),
            (&["node", "-e", "1"], Some(InlineCode)),
            (&["node", "--eval=1"], Some(InlineCode)),
            (&["awk", "{print}", "f"], Some(InlineCode)),
            (&["gawk", "BEGIN{system(\"id\")}"], Some(InlineCode)),
            (&["sed", "-e", "1e id", "f"], Some(InlineCode)),
            (&["sed", "s/a/b/", "f"], Some(InlineCode)),
            (&["env", "sh", "-c", "id"], Some(InlineCode)),
            (&["find", "/", "-exec", "sh", "-c", "id", ";"], Some(InlineCode)),
            // Modules from a search path that includes the working directory.
            (&["python3", "-m", "tool"], Some(NotReviewed)),
            (&["perl", "-MPOSIX", "/vre/ingress/app-a/x.pl"], Some(NotReviewed)),
            (&["node", "--require", "x", "/vre/ingress/app-a/m.js"], Some(NotReviewed)),
            // Writable programs and scripts.
            (&["/bin/sh", "/vre/work/x.sh"], Some(WritableProgram)),
            (&["./run.sh"], Some(WritableProgram)),
            (&["bin/tool"], Some(WritableProgram)),
            (&["/vre/work/tool"], Some(WritableProgram)),
            (&["/vre/output/x"], Some(WritableProgram)),
            (&["/tmp/x"], Some(WritableProgram)),
            (&["/dev/shm/x"], Some(WritableProgram)),
            (&["python3", "x.py"], Some(WritableProgram)),
            (&["python3", "/tmp/x.py"], Some(WritableProgram)),
            (&["sed", "-f", "/vre/work/s.sed", "f"], Some(WritableProgram)),
            (&["Rscript", "--file=/vre/work/a.R"], Some(OptionNotAllowed)),
            // Not reviewed: not staged, not ingress, the folder itself.
            (&["python3", "/vre/ingress/app-zzz/x.py"], Some(NotReviewed)),
            (&["/vre/ingress/app-c/run"], Some(NotReviewed)),
            (&["/vre/ingress/app-a"], Some(NotReviewed)),
            (&["/vre/ingress"], Some(NotReviewed)),
            (&["/vre/data/d1/tool"], Some(NotReviewed)),
            (&["/opt/tool"], Some(NotReviewed)),
            (&["/usr/bin/gcc"], Some(NotReviewed)),
            (&["/usr/local/bin/curl"], Some(NotReviewed)),
            (&["bash", "/etc/profile"], Some(NotReviewed)),
            // Unsafe paths.
            (&["/vre/ingress/app-a/../../work/x"], Some(UnsafePath)),
            (&["/vre/ingress/app-a/sub/../x"], Some(UnsafePath)),
            (&["python3", "/vre/work/../ingress/app-a/x.py"], Some(UnsafePath)),
            (&["/proc/self/root/vre/work/x"], Some(UnsafePath)),
            (&["/dev/fd/3"], Some(UnsafePath)),
            (&["/vre/ingress/app-a/x\0"], Some(UnsafePath)),
            // Not allowed.
            (&["curl", "x"], Some(CommandNotAllowed)),
            (&["python", "/vre/ingress/app-a/x.py"], Some(CommandNotAllowed)),
            (&["nice", "curl"], Some(CommandNotAllowed)),
            // Interpreters without scripts, and options the rule does not know.
            (&["python3"], Some(NoScript)),
            (&["bash", "-e"], Some(NoScript)),
            (&["julia"], Some(NoScript)),
            (&["awk"], Some(NoScript)),
            (&["julia", "-e", "1"], Some(OptionNotAllowed)),
            (&["python3", "-i", "/vre/ingress/app-a/x.py"], Some(OptionNotAllowed)),
            // `-X pycache_prefix=` would load compiled code from a writable folder.
            (&["python3", "-X", "pycache_prefix=/vre/work/c", "/vre/ingress/app-a/x.py"], Some(OptionNotAllowed)),
            (&["bash", "--rcfile", "/vre/work/rc", "/vre/ingress/app-a/x.sh"], Some(OptionNotAllowed)),
            (&["env", "BASH_ENV=/vre/work/x", "bash", "/vre/ingress/app-a/x.sh"], Some(OptionNotAllowed)),
            (&["env", "-S", "sh -c id"], Some(OptionNotAllowed)),
            (&["env", "-i", "sh"], Some(OptionNotAllowed)),
            (&["timeout", "-s", "KILL", "5", "ls"], Some(OptionNotAllowed)),
            // Launchers and runners.
            (&["env"], Some(EmptyCommand)),
            (&["env", "/vre/work/x"], Some(WritableProgram)),
            (&["xargs", "sh"], Some(CommandRunner)),
            (&["env", "env", "env", "env", "env", "ls"], Some(CommandRunner)),
            // Nothing at all.
            (&[], Some(EmptyCommand)),
            (&[""], Some(EmptyCommand)),
        ];
        for (argv, want) in table {
            let got = decide(argv);
            match (want, &got) {
                (None, Ok(_)) => {}
                (Some(rule), Err(r)) if r.rule == *rule => {
                    assert!(!r.message.is_empty());
                }
                _ => panic!("{argv:?}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn what_was_allowed_is_named() {
        assert_eq!(
            decide(&["python3", "-u", "/vre/ingress/app-a//x.py"]).unwrap(),
            Program::Interpreted {
                interpreter: "python3".into(),
                scripts: vec![Reviewed {
                    application: "app-a".into(),
                    path: "/vre/ingress/app-a/x.py".into(),
                }],
            }
        );
        assert_eq!(
            decide(&["env", "ls"]).unwrap(),
            Program::Launched {
                launcher: "env".into(),
                program: Box::new(Program::Command { name: "ls".into() }),
            }
        );
        assert_eq!(
            decide(&["/vre/ingress/app-b/run", "x"]).unwrap(),
            Program::Reviewed(Reviewed {
                application: "app-b".into(),
                path: "/vre/ingress/app-b/run".into(),
            })
        );
    }

    #[test]
    fn any_checks_only_that_there_is_a_command() {
        let none: Vec<String> = Vec::new();
        let image = ImageCommands::default();
        let any = |argv: &[&str]| check(CommandPolicy::Any, &strings(argv), &image, &none);
        assert_eq!(any(&["sh", "-c", "id"]), Ok(Program::Unchecked));
        assert_eq!(any(&[]).unwrap_err().rule, CommandRule::EmptyCommand);
        assert_eq!("any".parse::<CommandPolicy>(), Ok(CommandPolicy::Any));
        assert_eq!("approved".parse(), Ok(CommandPolicy::Approved));
        assert!("all".parse::<CommandPolicy>().is_err());
        assert_eq!(CommandPolicy::default(), CommandPolicy::Approved);
    }

    #[test]
    fn normalising_collapses_and_refuses() {
        assert_eq!(normalise("x").unwrap(), "/vre/work/x");
        assert_eq!(normalise("./a//b/.").unwrap(), "/vre/work/a/b");
        assert_eq!(normalise("/").unwrap(), "/");
        assert_eq!(normalise("//vre/ingress/").unwrap(), "/vre/ingress");
        assert_eq!(
            normalise("/a/../b").unwrap_err().rule,
            CommandRule::UnsafePath
        );
        assert!(syntax_of("python3.12").is_some());
        assert!(syntax_of("python3x").is_none());
        assert!(syntax_of("perl5.36").is_some());
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("vre".to_owned()),
            Just("work".to_owned()),
            Just("ingress".to_owned()),
            Just("app-a".to_owned()),
            Just("app-z".to_owned()),
            Just("tmp".to_owned()),
            "[a-z.]{1,4}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), proptest::collection::vec(segment(), 0..8)).prop_map(|(abs, segs)| {
            let p = segs.join("/");
            if abs { format!("/{p}") } else { p }
        })
    }

    proptest! {
        /// Whatever path is given, an accepted program or script is a file of a staged ingress
        /// and its normalised path has no `.`, `..` or empty segments.
        #[test]
        fn accepted_paths_are_staged_ingress_files(p in path(), interp in any::<bool>()) {
            let argv: Vec<&str> = if interp { vec!["python3", &p] } else { vec![&p] };
            if let Ok(prog) = decide(&argv) {
                let file = match prog {
                    Program::Reviewed(r) => Some(r),
                    Program::Interpreted { mut scripts, .. } => scripts.pop(),
                    _ => None,
                };
                if let Some(r) = file {
                    prop_assert!(r.application == "app-a" || r.application == "app-b");
                    let prefix = format!("/vre/ingress/{}/", r.application);
                    prop_assert!(r.path.starts_with(&prefix));
                    prop_assert!(!r.path.split('/').skip(1).any(|s| s.is_empty() || s == "." || s == ".."));
                    prop_assert!(!p.split('/').any(|s| s == ".."));
                } else {
                    // A bare name that is an allowed command: no slash in it.
                    prop_assert!(!interp && !p.contains('/'));
                }
            }
        }

        /// An inline-code option before any script is refused, whatever flags surround it (not
        /// after an option that takes a value: that value is not an option).
        #[test]
        fn inline_code_never_runs(
            interp in prop_oneof![Just("sh"), Just("bash"), Just("python3"), Just("perl"), Just("Rscript"), Just("node")],
            before in proptest::collection::vec(prop_oneof![Just("-u"), Just("-e"), Just("-x"), Just("--vanilla"), Just("ignore")], 0..4),
            after in proptest::collection::vec(prop_oneof![Just("/vre/ingress/app-a/x"), Just("id"), Just("-c")], 0..3),
        ) {
            let inline = match interp { "sh" | "bash" | "python3" => "-c", _ => "-e" };
            let mut argv = vec![interp];
            argv.extend(before.iter().copied());
            argv.push(inline);
            argv.extend(after.iter().copied());
            prop_assert!(decide(&argv).is_err(), "{:?}", argv);
        }
    }
}
