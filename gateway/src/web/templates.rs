//! The pages' templates and message catalogs, compiled into the binary. Templates are
//! minijinja's, HTML-escaped by default (their names end in `.html`); messages are one
//! `key = text` a line, a file per language, the same keys in each (checked by a test).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::Environment;

use super::Lang;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("queue.html", include_str!("templates/queue.html")),
    (
        "application.html",
        include_str!("templates/application.html"),
    ),
    ("preview.html", include_str!("templates/preview.html")),
    ("catalog.html", include_str!("templates/catalog.html")),
    ("mine.html", include_str!("templates/mine.html")),
    (
        "applications_table.html",
        include_str!("templates/applications_table.html"),
    ),
    (
        "application_downloads.html",
        include_str!("templates/application_downloads.html"),
    ),
    ("datasets.html", include_str!("templates/datasets.html")),
    ("dataset.html", include_str!("templates/dataset.html")),
    ("dmp.html", include_str!("templates/dmp.html")),
    (
        "dataset_app.html",
        include_str!("templates/dataset_app.html"),
    ),
    ("audit.html", include_str!("templates/audit.html")),
    (
        "dataset_link.html",
        include_str!("templates/dataset_link.html"),
    ),
    ("signed_in.html", include_str!("templates/signed_in.html")),
];

const JA: &str = include_str!("messages/ja.txt");
const EN: &str = include_str!("messages/en.txt");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("the template {name} does not parse: {e}"));
        }
        env
    })
}

/// Renders the template `name` with `ctx`.
pub(super) fn render(name: &str, ctx: &serde_json::Value) -> Result<String, minijinja::Error> {
    env()
        .get_template(name)?
        .render(minijinja::value::Serde(ctx))
}

fn parse(text: &'static str) -> BTreeMap<&'static str, &'static str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// The messages of `lang`, by key.
pub(super) fn messages(lang: Lang) -> &'static BTreeMap<&'static str, &'static str> {
    static JA_MAP: OnceLock<BTreeMap<&str, &str>> = OnceLock::new();
    static EN_MAP: OnceLock<BTreeMap<&str, &str>> = OnceLock::new();
    match lang {
        Lang::Ja => JA_MAP.get_or_init(|| parse(JA)),
        Lang::En => EN_MAP.get_or_init(|| parse(EN)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_both_languages_have_every_message() {
        let _ = env();
        let ja: Vec<_> = messages(Lang::Ja).keys().collect();
        let en: Vec<_> = messages(Lang::En).keys().collect();
        assert_eq!(ja, en);
        assert!(ja.len() > 20);
        // A key written twice would silently take its last text.
        for text in [JA, EN] {
            let mut seen = std::collections::BTreeSet::new();
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if let Some((k, _)) = line.split_once(" = ") {
                    assert!(
                        seen.insert(k.trim()),
                        "the message `{}` is written twice",
                        k.trim()
                    );
                }
            }
        }
        // Every key a template names is in the catalogs.
        for (name, source) in TEMPLATES {
            for part in source.split("t.").skip(1) {
                let key: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    messages(Lang::En).contains_key(key.as_str()),
                    "{name} names the message `{key}`, which has no text"
                );
            }
        }
    }
}
