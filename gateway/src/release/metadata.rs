//! The package's RO-Crate 1.1 metadata (<https://w3id.org/ro/crate/1.1>).
//!
//! The mapping, one flat `@graph` (every reference an `{"@id": …}`):
//!
//! | entity | `@id` | `@type` | what it says |
//! |---|---|---|---|
//! | metadata descriptor | `ro-crate-metadata.json` | `CreativeWork` | `conformsTo` RO-Crate 1.1, `about` `./` |
//! | the release | `./` | `Dataset` | `name`, `description`, `identifier` (the application), `datePublished` (the release time), `license` (`#license`), `hasPart` (every file and `SHA256SUMS`), `mentions` (every action below), `isBasedOn` (`#application`) |
//! | each released file | `files/<name>` (percent-encoded) | `File` | `name`, `contentSize` (bytes, as text), `sha256`, `encodingFormat` |
//! | the checksum list | `SHA256SUMS` | `File` | the same, `text/plain` |
//! | terms | `#license` | `CreativeWork` | a local note: no public licence; use as the committee approved |
//! | the egress application | `#application` | `CreativeWork` | `identifier`, `name` (its title), `description` (the justification), `author` (the requester), `dateCreated` (submitted), `isPartOf` (`#project`) |
//! | the project | `#project` | `Organization` (schema.org's `Project` is one; RO-Crate models projects so) | `identifier`, `name` |
//! | people | `#person-<id>` | `Person` | `identifier`, `name` (the requester, each reviewer) |
//! | the gateway | `#vre-gateway` | `SoftwareApplication` | `name`; the `agent` of checks and the release |
//! | the rules | `#rules` | `CreativeWork` | `version`: the disclosure rules the checks applied |
//! | each run | `#run-<id>` | `CreateAction` | `identifier`, `name`, `description` (command, outcome, exit code), `instrument` (the image), `object` (ingress archives, datasets), `result` (the released files, which come from the sandbox's output folder these runs wrote), `startTime`, `endTime`, `actionStatus` |
//! | each image | `#image-<id>` | `SoftwareApplication` | `identifier` (the engine's image ID), `name` |
//! | each ingress archive | `#ingress-<sha256>` | `CreativeWork` | `sha256`, `identifier` (its application), `name` |
//! | each dataset | `#dataset-<id>` | `Dataset` | `identifier`, `name` |
//! | each file's automatic checks | `#check-<name>` | `AssessAction` | `object` (the file), `agent` (`#vre-gateway`), `instrument` (`#rules`), `actionStatus` completed, `result` (`#check-<name>-result`), `description` (the requester's exception, if any) |
//! | their outcome | `#check-<name>-result` | `PropertyValue` | `name` "outcome", `value` (the outcome), `description` (the findings, as compact JSON) |
//! | each reviewer's decision | `#decision-<n>` | `ReviewAction` (an `AssessAction`) | `agent` (the reviewer), `object` (`#application`), `endTime`, `actionStatus` completed, `result` (`#decision-<n>-review`) |
//! | its review | `#decision-<n>-review` | `Review` | `name` (the choice), `reviewBody` (the comment), `author`, `datePublished`, `position` (the round) |
//! | the release itself | `#release` | `ShareAction` | `agent` (`#vre-gateway`), `object` (`./`), `recipient` (the requester), `endTime`, `instrument` (`#recipient-key`) |
//! | the recipient's key | `#recipient-key` | `PropertyValue` | `name` "age X25519 recipient", `value` (`age1…`) |
//!
//! Run outcomes map onto `actionStatus`: `succeeded` (or no outcome and exit code 0) is
//! `CompletedActionStatus`, no end yet is `ActiveActionStatus`, anything else
//! `FailedActionStatus` with the outcome in `error`. Only schema.org terms that the RO-Crate
//! 1.1 context defines are used, plus `sha256`, which RO-Crate uses for file digests.

use serde_json::{Value, json};

use super::{FILES_DIR, SUMS_NAME};

/// Everything the metadata says about one release.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrateInput {
    pub application: AppInfo,
    pub files: Vec<CrateFile>,
    pub runs: Vec<CrateRun>,
    pub decisions: Vec<CrateDecision>,
    /// The version of the disclosure rules the automatic checks applied.
    pub rules_version: String,
    /// RFC 3339.
    pub released_at: String,
    /// The age recipient (`age1…`) the package is encrypted to.
    pub recipient: String,
}

/// The egress application.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppInfo {
    pub id: String,
    pub title: String,
    pub project: String,
    pub requester: String,
    pub justification: String,
    pub sandbox: String,
    pub submitted_at: String,
}

/// One released file, its automatic checks and the requester's exception to them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrateFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub outcome: String,
    pub findings: Vec<Value>,
    pub exception: Option<String>,
}

/// One run of the sandbox the files come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrateRun {
    pub id: String,
    pub image_id: String,
    pub command: Vec<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// The ingress archives staged: (application id, archive SHA-256).
    pub ingress: Vec<(String, String)>,
    pub datasets: Vec<String>,
}

/// One reviewer's decision on the egress application.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrateDecision {
    pub round: i64,
    pub reviewer: String,
    pub choice: String,
    pub comment: String,
    pub decided_at: String,
}

/// The RO-Crate context this metadata uses.
pub const CONTEXT: &str = "https://w3id.org/ro/crate/1.1/context";
const CONFORMS_TO: &str = "https://w3id.org/ro/crate/1.1";

/// Percent-encodes `s` for an `@id` (a URI reference), keeping RFC 3986's unreserved
/// characters and, when `keep_slash`, `/`: every other byte of the UTF-8 becomes `%XX`.
pub(super) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `@id` of a released file: `files/<name>`, percent-encoded.
pub fn file_id(name: &str) -> String {
    format!("{FILES_DIR}/{}", percent_encode(name, true))
}

fn local(kind: &str, id: &str) -> String {
    format!("#{kind}-{}", percent_encode(id, false))
}

/// A reference to a person, noted in `people` so that each gets one entity.
fn person<'a>(who: &'a str, people: &mut Vec<&'a str>) -> Value {
    if !people.contains(&who) {
        people.push(who);
    }
    id(local("person", who))
}

fn id(s: impl Into<String>) -> Value {
    json!({ "@id": s.into() })
}

/// The RO-Crate 1.1 metadata of a release (see the module's documentation for the mapping).
/// `SHA256SUMS`'s entity carries the digest and size of [`sha256sums`](super::sha256sums) of
/// the same files.
pub fn ro_crate(input: &CrateInput) -> Value {
    let app = &input.application;
    let mut graph = Vec::new();
    let mut mentions = Vec::new();
    let mut people: Vec<&str> = Vec::new();

    let mut files: Vec<&CrateFile> = input.files.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let sums = sums_of(&files);
    let mut has_part: Vec<Value> = files.iter().map(|f| id(file_id(&f.name))).collect();
    has_part.push(id(SUMS_NAME));

    graph.push(json!({
        "@id": "ro-crate-metadata.json",
        "@type": "CreativeWork",
        "conformsTo": id(CONFORMS_TO),
        "about": id("./"),
    }));

    for f in &files {
        graph.push(json!({
            "@id": file_id(&f.name),
            "@type": "File",
            "name": f.name,
            "contentSize": f.size.to_string(),
            "sha256": f.sha256,
            "encodingFormat": f.content_type,
        }));
    }
    graph.push(json!({
        "@id": SUMS_NAME,
        "@type": "File",
        "name": SUMS_NAME,
        "description": format!("SHA-256 of every file under {FILES_DIR}/, as `sha256sum -c SHA256SUMS` checks them"),
        "contentSize": sums.len().to_string(),
        "sha256": crate::sha256_hex(sums.as_bytes()),
        "encodingFormat": "text/plain",
    }));

    graph.push(json!({
        "@id": "#license",
        "@type": "CreativeWork",
        "name": "Terms of the release",
        "description": format!(
            "No public licence. Released to the requester of application {} under the \
             data-use committee's approval; use only as approved for project {}.",
            app.id, app.project
        ),
    }));
    graph.push(json!({
        "@id": "#project",
        "@type": "Organization",
        "description": "The research project",
        "identifier": app.project,
        "name": app.project,
    }));
    graph.push(json!({
        "@id": "#application",
        "@type": "CreativeWork",
        "identifier": app.id,
        "name": app.title,
        "description": app.justification,
        "author": person(&app.requester, &mut people),
        "dateCreated": app.submitted_at,
        "isPartOf": id("#project"),
        "about": id(local("sandbox", &app.sandbox)),
    }));
    graph.push(json!({
        "@id": local("sandbox", &app.sandbox),
        "@type": "CreativeWork",
        "identifier": app.sandbox,
        "name": format!("Sandbox {}", app.sandbox),
    }));
    graph.push(json!({
        "@id": "#vre-gateway",
        "@type": "SoftwareApplication",
        "name": "VRE Gateway",
        "version": env!("CARGO_PKG_VERSION"),
    }));
    graph.push(json!({
        "@id": "#rules",
        "@type": "CreativeWork",
        "name": "VRE Gateway disclosure rules",
        "version": input.rules_version,
    }));

    // Runs, with their images, ingress archives and datasets (each entity once).
    let mut seen = std::collections::HashSet::new();
    let results: Vec<Value> = files.iter().map(|f| id(file_id(&f.name))).collect();
    for run in &input.runs {
        let run_id = local("run", &run.id);
        mentions.push(id(&run_id));
        let image = local("image", &run.image_id);
        let mut objects = Vec::new();
        for (app_id, sha) in &run.ingress {
            let ingress = local("ingress", sha);
            objects.push(id(&ingress));
            if seen.insert(ingress.clone()) {
                graph.push(json!({
                    "@id": ingress,
                    "@type": "CreativeWork",
                    "name": format!("Ingress archive of application {app_id}"),
                    "identifier": app_id,
                    "sha256": sha,
                    "encodingFormat": "application/x-tar",
                }));
            }
        }
        for ds in &run.datasets {
            let dataset = local("dataset", ds);
            objects.push(id(&dataset));
            if seen.insert(dataset.clone()) {
                graph.push(json!({
                    "@id": dataset,
                    "@type": "Dataset",
                    "identifier": ds,
                    "name": format!("Dataset {ds}"),
                }));
            }
        }
        if seen.insert(image.clone()) {
            graph.push(json!({
                "@id": image,
                "@type": "SoftwareApplication",
                "identifier": run.image_id,
                "name": format!("Container image {}", run.image_id),
            }));
        }
        let status = match (run.outcome.as_deref(), run.exit_code, &run.finished_at) {
            (Some("succeeded"), _, _) | (None, Some(0), _) => "CompletedActionStatus",
            (None, None, None) => "ActiveActionStatus",
            _ => "FailedActionStatus",
        };
        let mut description = format!("Command: {}", shell_words(&run.command));
        if let Some(o) = &run.outcome {
            description.push_str(&format!("; outcome: {o}"));
        }
        if let Some(c) = run.exit_code {
            description.push_str(&format!("; exit code: {c}"));
        }
        let mut action = json!({
            "@id": run_id,
            "@type": "CreateAction",
            "identifier": run.id,
            "name": format!("Run {}", run.id),
            "description": description,
            "instrument": id(image),
            "object": objects,
            "result": results,
            "actionStatus": id(format!("http://schema.org/{status}")),
        });
        if let Some(t) = &run.started_at {
            action["startTime"] = json!(t);
        }
        if let Some(t) = &run.finished_at {
            action["endTime"] = json!(t);
        }
        if status == "FailedActionStatus" {
            action["error"] = json!(run.outcome.clone().unwrap_or_else(|| "failed".into()));
        }
        graph.push(action);
    }

    // The automatic checks, one assessment per file.
    for f in &files {
        let check = local("check", &f.name);
        mentions.push(id(&check));
        let mut action = json!({
            "@id": check,
            "@type": "AssessAction",
            "name": format!("Automatic checks of {FILES_DIR}/{}", f.name),
            "object": id(file_id(&f.name)),
            "agent": id("#vre-gateway"),
            "instrument": id("#rules"),
            "actionStatus": id("http://schema.org/CompletedActionStatus"),
            "result": id(format!("{check}-result")),
        });
        if let Some(e) = &f.exception {
            action["description"] = json!(format!("Exception requested: {e}"));
        }
        graph.push(action);
        graph.push(json!({
            "@id": format!("{check}-result"),
            "@type": "PropertyValue",
            "name": "outcome",
            "value": f.outcome,
            "description": Value::Array(f.findings.clone()).to_string(),
        }));
    }

    // The committee's decisions.
    for (n, d) in input.decisions.iter().enumerate() {
        let decision = format!("#decision-{}", n + 1);
        mentions.push(id(&decision));
        let reviewer = person(&d.reviewer, &mut people);
        graph.push(json!({
            "@id": decision,
            "@type": "ReviewAction",
            "name": format!("Round {}: {} by {}", d.round, d.choice, d.reviewer),
            "agent": reviewer,
            "object": id("#application"),
            "endTime": d.decided_at,
            "actionStatus": id("http://schema.org/CompletedActionStatus"),
            "result": id(format!("{decision}-review")),
        }));
        graph.push(json!({
            "@id": format!("{decision}-review"),
            "@type": "Review",
            "name": d.choice,
            "reviewBody": d.comment,
            "author": reviewer,
            "datePublished": d.decided_at,
            "position": d.round,
        }));
    }

    // The release.
    mentions.push(id("#release"));
    graph.push(json!({
        "@id": "#release",
        "@type": "ShareAction",
        "name": format!("Release of application {}", app.id),
        "agent": id("#vre-gateway"),
        "object": id("./"),
        "recipient": person(&app.requester, &mut people),
        "endTime": input.released_at,
        "actionStatus": id("http://schema.org/CompletedActionStatus"),
        "instrument": id("#recipient-key"),
    }));
    graph.push(json!({
        "@id": "#recipient-key",
        "@type": "PropertyValue",
        "name": "age X25519 recipient",
        "value": input.recipient,
    }));
    for who in people {
        graph.push(json!({
            "@id": local("person", who),
            "@type": "Person",
            "identifier": who,
            "name": who,
        }));
    }

    let root = json!({
        "@id": "./",
        "@type": "Dataset",
        "name": format!("Release of {}: {}", app.id, app.title),
        "description": format!(
            "Results from sandbox {} of project {}, released to {} after the data-use \
             committee approved egress application {}. Each file's SHA-256 is in SHA256SUMS; \
             the runs that made them, their automatic checks and the committee's decisions \
             are described below.",
            app.sandbox, app.project, app.requester, app.id
        ),
        "identifier": app.id,
        "datePublished": input.released_at,
        "license": id("#license"),
        "isBasedOn": id("#application"),
        "hasPart": has_part,
        "mentions": mentions,
    });
    graph.insert(1, root);

    json!({
        "@context": CONTEXT,
        "@graph": graph,
    })
}

/// What [`sha256sums`](super::sha256sums) writes for these files.
fn sums_of(files: &[&CrateFile]) -> String {
    files
        .iter()
        .map(|f| {
            format!(
                "{}  {FILES_DIR}/{}\n",
                f.sha256.to_ascii_lowercase(),
                f.name
            )
        })
        .collect()
}

/// A command as a person would type it, quoting words that need it.
fn shell_words(command: &[String]) -> String {
    command
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
