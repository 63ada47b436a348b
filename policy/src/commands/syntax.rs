//! What the rule knows of interpreters' command lines (which options take code inline, load a
//! module, take a value, or name the script), and how an allowed interpreter's arguments are
//! read with it: the script must come from a staged ingress, and no option may carry code.

use super::*;

/// How an interpreter's command line reads: which options take code, values, or the script.
#[derive(Clone, Copy, Debug)]
pub struct Syntax {
    /// The names it goes by (a trailing `*` matches a version suffix: `python3.12`).
    pub names: &'static [&'static str],
    /// Short options that take code inline (`-c`) or read it from standard input (`-s`).
    pub inline: &'static str,
    /// Long options that do the same.
    pub long_inline: &'static [&'static str],
    /// Short options that load a module found on a search path (`-m`, `-M`, `-r`).
    pub modules: &'static str,
    /// Long options that do the same.
    pub long_modules: &'static [&'static str],
    /// Short options without a value, safe.
    pub flags: &'static str,
    /// Short options with a value (attached or the next argument) that is not code.
    pub values: &'static str,
    /// Long options, exact, without a value.
    pub long_flags: &'static [&'static str],
    /// Long options written `--name=value`, whose value is not code.
    pub long_values: &'static [&'static str],
    /// Short options whose value is a script (`awk -f FILE`).
    pub script_opts: &'static str,
    /// Long options written `--name=FILE` whose value is a script.
    pub long_script: &'static [&'static str],
    /// Without a script option, the first operand is program text (`awk '{print}'`), not a file.
    pub operand_is_code: bool,
}

const NONE: &[&str] = &[];

/// What the rule knows of common interpreters. Any other allowed interpreter takes no options.
pub const SYNTAXES: &[Syntax] = &[
    Syntax {
        names: &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"],
        inline: "cs",
        long_inline: NONE,
        modules: "",
        long_modules: NONE,
        flags: "eunvxfC",
        values: "o",
        long_flags: &["--norc", "--noprofile", "--posix", "--restricted"],
        long_values: NONE,
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["python", "python3", "python*"],
        inline: "c",
        long_inline: NONE,
        modules: "m",
        long_modules: NONE,
        flags: "bBdEIOPqsSuvx",
        values: "W",
        long_flags: NONE,
        long_values: NONE,
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["Rscript"],
        inline: "e",
        long_inline: NONE,
        modules: "",
        long_modules: NONE,
        flags: "",
        values: "",
        long_flags: &[
            "--vanilla",
            "--no-save",
            "--no-restore",
            "--no-environ",
            "--no-site-file",
            "--no-init-file",
            "--verbose",
        ],
        long_values: &["--default-packages"],
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["R"],
        inline: "e",
        long_inline: NONE,
        modules: "",
        long_modules: NONE,
        flags: "qs",
        values: "",
        long_flags: &[
            "--vanilla",
            "--no-save",
            "--no-restore",
            "--no-environ",
            "--no-site-file",
            "--no-init-file",
            "--quiet",
            "--silent",
            "--slave",
            "--no-echo",
        ],
        long_values: NONE,
        script_opts: "f",
        long_script: &["--file"],
        operand_is_code: false,
    },
    Syntax {
        names: &["perl", "perl5*"],
        inline: "eE",
        long_inline: NONE,
        modules: "MmI",
        long_modules: NONE,
        flags: "wWXTtU",
        values: "",
        long_flags: NONE,
        long_values: NONE,
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["node", "nodejs"],
        inline: "ep",
        long_inline: &["--eval", "--print", "--interactive"],
        modules: "r",
        long_modules: &["--require", "--import", "--loader", "--experimental-loader"],
        flags: "",
        values: "",
        long_flags: &[
            "--no-warnings",
            "--enable-source-maps",
            "--trace-warnings",
            "--no-deprecation",
        ],
        long_values: &["--max-old-space-size", "--unhandled-rejections"],
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["ruby"],
        inline: "e",
        long_inline: NONE,
        modules: "rI",
        long_modules: NONE,
        flags: "wW",
        values: "",
        long_flags: NONE,
        long_values: NONE,
        script_opts: "",
        long_script: NONE,
        operand_is_code: false,
    },
    Syntax {
        names: &["awk", "gawk", "mawk", "nawk"],
        inline: "e",
        long_inline: &["--source"],
        modules: "il",
        long_modules: &["--include", "--load"],
        flags: "",
        values: "vF",
        long_flags: NONE,
        long_values: NONE,
        script_opts: "fE",
        long_script: &["--file"],
        operand_is_code: true,
    },
    Syntax {
        names: &["sed"],
        inline: "e",
        long_inline: &["--expression"],
        modules: "",
        long_modules: NONE,
        flags: "nErsuz",
        values: "",
        long_flags: &["--quiet", "--silent", "--regexp-extended", "--separate"],
        long_values: NONE,
        script_opts: "f",
        long_script: &["--file"],
        operand_is_code: true,
    },
];

/// The syntax of an interpreter by its name, if the rule knows it.
pub fn syntax_of(name: &str) -> Option<&'static Syntax> {
    SYNTAXES.iter().find(|s| {
        s.names.iter().any(|n| match n.strip_suffix('*') {
            Some(stem) => name.strip_prefix(stem).is_some_and(|v| {
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            }),
            None => *n == name,
        })
    })
}

pub(super) fn interpreted(
    name: &str,
    syntax: &Syntax,
    args: &[String],
    staged: &[String],
) -> Result<Program, CommandRefusal> {
    let inline = |what: &str| {
        refuse::<Program>(
            CommandRule::InlineCode,
            format!(
                "`{name} {what}` runs code given on the command line or on standard input, which nobody reviewed; put it in a script, submit it as ingress and run `{name} /vre/ingress/<application>/<script>`"
            ),
        )
    };
    let module = |what: &str| {
        refuse::<Program>(
            CommandRule::NotReviewed,
            format!(
                "`{name} {what}` loads code found on a search path that includes the working directory; run a script from an approved ingress instead"
            ),
        )
    };
    let unknown = |what: &str| {
        refuse::<Program>(
            CommandRule::OptionNotAllowed,
            format!(
                "`{name} {what}` is an option this rule does not know to be safe; put the script right after `{name}`"
            ),
        )
    };
    let mut scripts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            if scripts.is_empty() {
                if let Some(s) = args.get(i) {
                    if syntax.operand_is_code {
                        return inline(s);
                    }
                    scripts.push(reviewed_file(s, "the script", staged)?);
                }
            }
            break;
        }
        if a == "-" {
            return inline("-");
        }
        if let Some(long) = a.strip_prefix("--") {
            let (opt, value) = match long.split_once('=') {
                Some((o, v)) => (format!("--{o}"), Some(v)),
                None => (a.to_owned(), None),
            };
            let opt = opt.as_str();
            if syntax.long_inline.contains(&opt) {
                return inline(opt);
            }
            if syntax.long_modules.contains(&opt) {
                return module(opt);
            }
            if syntax.long_script.contains(&opt) {
                let Some(v) = value else { return unknown(a) };
                scripts.push(reviewed_file(v, "the script", staged)?);
                continue;
            }
            if (value.is_none() && syntax.long_flags.contains(&opt))
                || (value.is_some() && syntax.long_values.contains(&opt))
            {
                continue;
            }
            return unknown(a);
        }
        if let Some(cluster) = a.strip_prefix('-') {
            for (at, c) in cluster.char_indices() {
                let rest = &cluster[at + c.len_utf8()..];
                if syntax.inline.contains(c) {
                    return inline(&format!("-{c}"));
                }
                if syntax.modules.contains(c) {
                    return module(&format!("-{c}"));
                }
                let takes_value = syntax.values.contains(c) || syntax.script_opts.contains(c);
                if takes_value {
                    let value = if rest.is_empty() {
                        let Some(v) = args.get(i) else {
                            return unknown(a);
                        };
                        i += 1;
                        v.as_str()
                    } else {
                        rest
                    };
                    if syntax.script_opts.contains(c) {
                        scripts.push(reviewed_file(value, "the script", staged)?);
                    }
                    break;
                }
                if !syntax.flags.contains(c) {
                    return unknown(&format!("-{c}"));
                }
            }
            continue;
        }
        // The first operand: program text for awk and sed without `-f`, else the script;
        // everything after a script is its input.
        if scripts.is_empty() {
            if syntax.operand_is_code {
                return inline(a);
            }
            scripts.push(reviewed_file(a, "the script", staged)?);
        }
        break;
    }
    if scripts.is_empty() {
        return refuse(
            CommandRule::NoScript,
            format!(
                "`{name}` without a script reads its program from standard input; run `{name} /vre/ingress/<application>/<script>`"
            ),
        );
    }
    Ok(Program::Interpreted {
        interpreter: name.to_owned(),
        scripts,
    })
}
