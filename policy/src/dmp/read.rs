//! Reading a DMP field by field, every bad field noted and none stopping the others.

use serde_json::{Map, Value};

use super::fields::{FIELDS, RESEARCH_FIELDS};
use super::{
    AccessRights, Category, Consent, ConsentForm, ConsentObtained, Contact, Creator, Date, Dmp,
    FieldError, Institution, Problem,
};

/// Short texts: names, numbers, codes.
pub(super) const SHORT: usize = 500;
/// Prose: descriptions, policies, the consent's scope.
pub(super) const LONG: usize = 10_000;
/// Creators listed at most.
pub(super) const MAX_CREATORS: usize = 100;

struct Reader<'a> {
    errors: Vec<FieldError>,
    today: &'a Date,
}

impl Reader<'_> {
    fn bad(&mut self, field: impl Into<String>, problem: Problem) {
        self.errors.push(FieldError {
            field: field.into(),
            problem,
        });
    }

    /// Nothing for a field that is not there: missing, when it is required.
    fn absent<T>(&mut self, path: impl Into<String>, required: bool) -> Option<T> {
        if required {
            self.bad(path, Problem::Missing);
        }
        None
    }

    /// A text field: trimmed, bounded; a blank one counts as absent.
    fn text(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        max: usize,
        required: bool,
    ) -> Option<String> {
        let path = join(prefix, key);
        match obj.get(key) {
            None | Some(Value::Null) => self.absent(path, required),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    self.absent(path, required)
                } else if s.chars().count() > max {
                    self.bad(path, Problem::TooLong(max));
                    None
                } else if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    self.bad(
                        path,
                        Problem::Invalid("must not hold control characters".into()),
                    );
                    None
                } else {
                    Some(s.to_owned())
                }
            }
            Some(_) => {
                self.bad(path, Problem::WrongType("a string"));
                None
            }
        }
    }

    fn date(&mut self, obj: &Map<String, Value>, key: &str, required: bool) -> Option<Date> {
        let s = self.text(obj, "", key, 64, required)?;
        let d = Date::parse(&s);
        if d.is_none() {
            self.bad(key, Problem::Invalid("must be a date, YYYY-MM-DD".into()));
        }
        d
    }

    fn choice<T: Copy>(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        all: &[T],
        name: fn(T) -> &'static str,
        required: bool,
    ) -> Option<T> {
        let s = self.text(obj, prefix, key, SHORT, required)?;
        let found = all.iter().copied().find(|v| name(*v) == s);
        if found.is_none() {
            self.bad(
                join(prefix, key),
                Problem::NotOneOf(all.iter().map(|v| name(*v)).collect()),
            );
        }
        found
    }

    fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        required: bool,
    ) -> Option<&'v Map<String, Value>> {
        match obj.get(key) {
            None | Some(Value::Null) => self.absent(key, required),
            Some(Value::Object(m)) => {
                self.unknown(m, key);
                Some(m)
            }
            Some(_) => {
                self.bad(key, Problem::WrongType("an object"));
                None
            }
        }
    }

    /// Notes every key of `obj` that is no field under `prefix`.
    fn unknown(&mut self, obj: &Map<String, Value>, prefix: &str) {
        for k in obj.keys() {
            let path = join(prefix, k);
            let generic = if prefix.starts_with("creators[") {
                format!("creators[].{k}")
            } else {
                path.clone()
            };
            if !FIELDS.iter().any(|f| f.key == generic) {
                self.bad(path, Problem::Unknown);
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A placeholder for a value whose field is bad: the document is refused anyway.
fn or_blank(v: Option<String>) -> String {
    v.unwrap_or_default()
}

pub(super) fn read(value: &Value, today: &Date) -> Result<Dmp, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError {
            field: "(document)".into(),
            problem: Problem::WrongType("an object of fields"),
        }]);
    };
    let mut r = Reader {
        errors: Vec::new(),
        today,
    };
    r.unknown(obj, "");

    let funder = r.text(obj, "", "funder", SHORT, true);
    let funding_stream_code = r.text(obj, "", "funding_stream_code", SHORT, false);
    let program_name = r.text(obj, "", "program_name", SHORT, false);
    let japan_grant_number = r.text(obj, "", "japan_grant_number", SHORT, true);
    let project_name = r.text(obj, "", "project_name", SHORT, true);
    let data_no = r.text(obj, "", "data_no", SHORT, true);
    let title = r.text(obj, "", "title", SHORT, true);
    let date_issued = r.date(obj, "date_issued", true);
    let description = r.text(obj, "", "description", LONG, true);
    let research_field = r.text(obj, "", "research_field", SHORT, true);
    if let Some(code) = &research_field {
        if !RESEARCH_FIELDS.iter().any(|(c, _)| c == code) {
            r.bad(
                "research_field",
                Problem::NotOneOf(RESEARCH_FIELDS.iter().map(|(c, _)| *c).collect()),
            );
        }
    }
    let data_type = r.text(obj, "", "data_type", SHORT, true);
    let approximate_size = r.text(obj, "", "approximate_size", SHORT, false);
    let utilisation_policy = r.text(obj, "", "utilisation_policy", LONG, true);
    let access_rights = r.choice(
        obj,
        "",
        "access_rights",
        AccessRights::ALL,
        AccessRights::as_str,
        true,
    );
    let publication_date = r.date(obj, "publication_date", false);
    if access_rights == Some(AccessRights::Embargoed)
        && publication_date.is_none()
        && !obj.contains_key("publication_date")
    {
        r.bad(
            "publication_date",
            Problem::Invalid("is required when the access rights are embargoed".into()),
        );
    }
    let repository = r.text(obj, "", "repository", SHORT, false);
    let repository_url = r.text(obj, "", "repository_url", SHORT, false);
    if let Some(url) = &repository_url {
        let ok =
            (url.starts_with("https://") || url.starts_with("http://") || url.starts_with("doi:"))
                && !url.chars().any(char::is_whitespace);
        if !ok {
            r.bad(
                "repository_url",
                Problem::Invalid("must be an http(s) URL or a DOI (doi:…)".into()),
            );
        }
    }
    let creators = read_creators(&mut r, obj);
    let hosting_institution = r.text(obj, "", "hosting_institution", SHORT, true);
    let hosting_institution_id = r.text(obj, "", "hosting_institution_id", SHORT, false);
    let data_manager = r.text(obj, "", "data_manager", SHORT, true);
    let data_manager_erad_number = r.text(obj, "", "data_manager_erad_number", SHORT, false);
    if let Some(n) = &data_manager_erad_number {
        check_erad(&mut r, "data_manager_erad_number", n);
    }
    let contact = r.object(obj, "data_manager_contact", true).map(|c| {
        let organisation = r.text(c, "data_manager_contact", "organisation", SHORT, true);
        let address = r.text(c, "data_manager_contact", "address", SHORT, false);
        let phone = r.text(c, "data_manager_contact", "phone", SHORT, false);
        let email = r.text(c, "data_manager_contact", "email", SHORT, true);
        if let Some(e) = &email {
            let ok = e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            }) && !e.chars().any(char::is_whitespace);
            if !ok {
                r.bad(
                    "data_manager_contact.email",
                    Problem::Invalid("must be an e-mail address".into()),
                );
            }
        }
        Contact {
            organisation: or_blank(organisation),
            address,
            phone,
            email: or_blank(email),
        }
    });
    let remarks = r.text(obj, "", "remarks", LONG, false);

    let category = r.choice(
        obj,
        "",
        "management_category",
        Category::ALL,
        Category::as_str,
        true,
    );
    let ends = r.date(obj, "restricted_sharing_ends", false);
    let after = r.choice(
        obj,
        "",
        "category_after",
        Category::ALL,
        Category::as_str,
        false,
    );
    check_period(
        &mut r,
        obj,
        category,
        date_issued.as_ref(),
        ends.as_ref(),
        after,
    );

    let consent = r.object(obj, "consent", true).map(|c| {
        let obtained = r.choice(
            c,
            "consent",
            "obtained",
            ConsentObtained::ALL,
            ConsentObtained::as_str,
            true,
        );
        let form = r.choice(
            c,
            "consent",
            "form",
            ConsentForm::ALL,
            ConsentForm::as_str,
            false,
        );
        let scope = r.text(c, "consent", "scope", LONG, true);
        (obtained, form, scope)
    });
    let institution = r.object(obj, "providing_institution", true).map(|i| {
        let id = r.text(i, "providing_institution", "id", 64, true);
        if let Some(id) = &id {
            if crate::ids::ProjectId::parse(id).is_err() {
                r.bad(
                    "providing_institution.id",
                    Problem::Invalid("must be lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit".into()),
                );
            }
        }
        let name = r.text(i, "providing_institution", "name", SHORT, true);
        Institution {
            id: or_blank(id),
            name: or_blank(name),
        }
    });

    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    // Every required field was read, or an error was noted above.
    let missing = || {
        vec![FieldError {
            field: "(document)".into(),
            problem: Problem::Invalid("internal: a required field was not read".into()),
        }]
    };
    let (Some(obtained), form, Some(scope)) = consent.ok_or_else(missing)? else {
        return Err(missing());
    };
    Ok(Dmp {
        funder: funder.ok_or_else(missing)?,
        funding_stream_code,
        program_name,
        japan_grant_number: japan_grant_number.ok_or_else(missing)?,
        project_name: project_name.ok_or_else(missing)?,
        data_no: data_no.ok_or_else(missing)?,
        title: title.ok_or_else(missing)?,
        date_issued: date_issued.ok_or_else(missing)?,
        description: description.ok_or_else(missing)?,
        research_field: research_field.ok_or_else(missing)?,
        data_type: data_type.ok_or_else(missing)?,
        approximate_size,
        utilisation_policy: utilisation_policy.ok_or_else(missing)?,
        access_rights: access_rights.ok_or_else(missing)?,
        publication_date,
        repository,
        repository_url,
        creators,
        hosting_institution: hosting_institution.ok_or_else(missing)?,
        hosting_institution_id,
        data_manager: data_manager.ok_or_else(missing)?,
        data_manager_erad_number,
        data_manager_contact: contact.ok_or_else(missing)?,
        remarks,
        management_category: category.ok_or_else(missing)?,
        restricted_sharing_ends: ends,
        category_after: after,
        consent: Consent {
            obtained,
            form,
            scope,
        },
        providing_institution: institution.ok_or_else(missing)?,
    })
}

/// The restricted-sharing period: an end date and the more open category that follows it, for
/// the restricted categories only; the end after the data's issue and after today.
fn check_period(
    r: &mut Reader<'_>,
    obj: &Map<String, Value>,
    category: Option<Category>,
    issued: Option<&Date>,
    ends: Option<&Date>,
    after: Option<Category>,
) {
    let Some(category) = category else { return };
    if category.is_restricted() {
        if ends.is_none() && !obj.contains_key("restricted_sharing_ends") {
            r.bad(
                "restricted_sharing_ends",
                Problem::Invalid(format!("is required for the category {category}")),
            );
        }
        if after.is_none() && !obj.contains_key("category_after") {
            r.bad(
                "category_after",
                Problem::Invalid(format!("is required for the category {category}")),
            );
        }
        if let Some(ends) = ends {
            if ends <= r.today {
                r.bad(
                    "restricted_sharing_ends",
                    Problem::Invalid(format!("must be after today ({})", r.today)),
                );
            } else if issued.is_some_and(|i| ends <= i) {
                r.bad(
                    "restricted_sharing_ends",
                    Problem::Invalid("must be after the date issued".into()),
                );
            }
        }
        if let Some(after) = after {
            if after <= category {
                r.bad(
                    "category_after",
                    Problem::Invalid(format!(
                        "must be more open than {category}: one of {}",
                        Category::ALL
                            .iter()
                            .filter(|c| **c > category)
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
    } else {
        let why = format!("the category {category} has no restricted-sharing period");
        if obj.contains_key("restricted_sharing_ends") {
            r.bad("restricted_sharing_ends", Problem::NotAllowed(why.clone()));
        }
        if obj.contains_key("category_after") {
            r.bad("category_after", Problem::NotAllowed(why));
        }
    }
}

fn check_erad(r: &mut Reader<'_>, path: &str, n: &str) {
    if n.len() != 8 || !n.bytes().all(|b| b.is_ascii_digit()) {
        r.bad(
            path,
            Problem::Invalid("must be an e-Rad researcher number: 8 digits".into()),
        );
    }
}

fn read_creators(r: &mut Reader<'_>, obj: &Map<String, Value>) -> Vec<Creator> {
    let list = match obj.get("creators") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            r.bad("creators", Problem::WrongType("a list of creators"));
            return Vec::new();
        }
    };
    if list.len() > MAX_CREATORS {
        r.bad(
            "creators",
            Problem::Invalid(format!("lists more than {MAX_CREATORS} creators")),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let prefix = format!("creators[{i}]");
        let Some(c) = c.as_object() else {
            r.bad(prefix, Problem::WrongType("an object with a name"));
            continue;
        };
        r.unknown(c, &prefix);
        let name = r.text(c, &prefix, "name", SHORT, true);
        let number = r.text(c, &prefix, "erad_researcher_number", SHORT, false);
        if let Some(n) = &number {
            check_erad(r, &format!("{prefix}.erad_researcher_number"), n);
        }
        out.push(Creator {
            name: or_blank(name),
            erad_researcher_number: number,
        });
    }
    out
}
