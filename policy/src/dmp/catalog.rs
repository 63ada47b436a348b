//! The public catalog: which datasets it shows and what of their DMPs it shows.
//!
//! AMED makes catalog entries of the datasets whose DMP allows secondary use (category [B],
//! which includes [C]): every management category but unshared. An entry carries the public
//! items of the DMP only: what the data is, who provides it and under which conditions. No
//! contact details, no people's identifiers, and nothing of the content.

use serde::{Deserialize, Serialize};

use super::{AccessRights, Category, Dmp};

/// The longest search text the catalog takes, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// Whether a dataset of `category` is shown in the public catalog: restricted closed sharing
/// (制限共有), restricted open sharing (制限公開) and unrestricted open sharing (非制限公開) are;
/// unshared (非共有) data is never shown, not even its title.
pub fn in_catalog(category: Category) -> bool {
    match category {
        Category::Unshared => false,
        Category::RestrictedClosedSharing
        | Category::RestrictedOpenSharing
        | Category::UnrestrictedOpenSharing => true,
    }
}

/// The categories [`in_catalog`] shows, in order.
pub fn catalog_categories() -> Vec<Category> {
    Category::ALL
        .iter()
        .copied()
        .filter(|c| in_catalog(*c))
        .collect()
}

/// What the catalog shows of a DMP: its public common metadata items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub title: String,
    pub description: String,
    pub funder: String,
    pub project_name: String,
    pub japan_grant_number: String,
    pub data_no: String,
    pub date_issued: String,
    pub research_field: String,
    pub data_type: String,
    pub approximate_size: Option<String>,
    pub utilisation_policy: String,
    pub access_rights: AccessRights,
    pub repository: Option<String>,
    pub hosting_institution: String,
    /// The data-providing institution: its identifier and name.
    pub institution: String,
    pub institution_name: String,
    /// The uses the participants consented to.
    pub consent_scope: String,
}

/// The public part of a DMP.
pub fn entry(dmp: &Dmp) -> Entry {
    Entry {
        title: dmp.title.clone(),
        description: dmp.description.clone(),
        funder: dmp.funder.clone(),
        project_name: dmp.project_name.clone(),
        japan_grant_number: dmp.japan_grant_number.clone(),
        data_no: dmp.data_no.clone(),
        date_issued: dmp.date_issued.to_string(),
        research_field: dmp.research_field.clone(),
        data_type: dmp.data_type.clone(),
        approximate_size: dmp.approximate_size.clone(),
        utilisation_policy: dmp.utilisation_policy.clone(),
        access_rights: dmp.access_rights,
        repository: dmp.repository.clone(),
        hosting_institution: dmp.hosting_institution.clone(),
        institution: dmp.providing_institution.id.clone(),
        institution_name: dmp.providing_institution.name.clone(),
        consent_scope: dmp.consent.scope.clone(),
    }
}

/// What a search matches an entry against: its title, description and keywords (research
/// field, data type, the institution's identifier and name), each folded by [`fold`] and
/// separated by a line break, which no query holds, so no match spans two fields.
pub fn search_text(e: &Entry) -> String {
    [
        &e.title,
        &e.description,
        &e.research_field,
        &e.data_type,
        &e.institution,
        &e.institution_name,
    ]
    .iter()
    .map(|s| fold(s))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Text folded for a case-insensitive match in any language: Unicode lower case, and line
/// breaks and other white space as single spaces. Japanese has no case and stays as written.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            out.push(' ');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Why a search text is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the search text is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
}

/// A search text made ready to match [`search_text`]: folded and trimmed; `None` when it is
/// blank (every entry matches).
pub fn query(q: &str) -> Result<Option<String>, QueryError> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong);
    }
    let folded = fold(q);
    let t = folded.trim();
    Ok((!t.is_empty()).then(|| t.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::{Date, from_value};
    use super::*;

    fn example() -> Dmp {
        let v = serde_json::from_str(include_str!("../../../deploy/examples/dmp.json")).unwrap();
        from_value(&v, &Date::parse("2026-12-01").unwrap()).unwrap()
    }

    #[test]
    fn every_category_but_unshared_is_in_the_catalog() {
        let shown: Vec<(Category, bool)> =
            Category::ALL.iter().map(|c| (*c, in_catalog(*c))).collect();
        assert_eq!(
            shown,
            [
                (Category::Unshared, false),
                (Category::RestrictedClosedSharing, true),
                (Category::RestrictedOpenSharing, true),
                (Category::UnrestrictedOpenSharing, true),
            ]
        );
        // The same rule as the DMP's own word on secondary use.
        for c in Category::ALL {
            assert_eq!(in_catalog(*c), c.allows_secondary_use(), "{c}");
        }
        assert_eq!(catalog_categories().len(), 3);
    }

    #[test]
    fn an_entry_holds_no_contact_nor_person() {
        let dmp = example();
        let e = entry(&dmp);
        let json = serde_json::to_string(&e).unwrap();
        for private in [
            &dmp.data_manager_contact.email,
            dmp.data_manager_contact.phone.as_ref().unwrap(),
            dmp.data_manager_contact.address.as_ref().unwrap(),
            &dmp.data_manager,
            dmp.data_manager_erad_number.as_ref().unwrap(),
            &dmp.creators[0].name,
            dmp.creators[0].erad_researcher_number.as_ref().unwrap(),
        ] {
            assert!(!json.contains(private.as_str()), "{private} leaked");
        }
        assert_eq!(e.title, dmp.title);
        assert_eq!(e.institution, "tohoku-u");
    }

    #[test]
    fn searches_fold_case_in_both_languages_and_stay_within_fields() {
        let e = entry(&example());
        let text = search_text(&e);
        let hit = |q: &str| text.contains(&query(q).unwrap().unwrap());
        assert!(hit("WHOLE GENOMES"));
        assert!(hit("全ゲノム"));
        assert!(hit("  cohort a)  "));
        assert!(hit("icd-10"));
        assert!(hit("Tohoku University"));
        assert!(!hit("dmp@example"));
        assert!(!hit("Hanako"));
        // A query cannot span two fields.
        assert!(!hit("laboratory values. 189"));
        assert_eq!(query("   "), Ok(None));
        assert_eq!(
            query(&"x".repeat(MAX_QUERY_CHARS)).map(|q| q.is_some()),
            Ok(true)
        );
        assert_eq!(
            query(&"x".repeat(MAX_QUERY_CHARS + 1)),
            Err(QueryError::TooLong)
        );
        assert_eq!(fold("Straße\nÉTÉ"), "straße été");
    }
}
