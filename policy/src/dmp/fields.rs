//! The fields of a DMP: their names in our JSON, their labels in Japanese and English, and
//! whether they are mandatory.
//!
//! Items 1–24 are the Cabinet Office's common metadata items in the order and wording of the
//! research notes (`output-checking.md` §5.6, taken from GakuNin RDM's `e-rad-metadata-1.json`,
//! which conforms to them); the numbers are those notes' own. The rest are AMED's DMP entries
//! (§5.3): the management category, the restricted-sharing period, consent, and the
//! data-providing institution.

/// A field's name for people, in both languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    pub ja: &'static str,
    pub en: &'static str,
}

/// One field of a DMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its path in our JSON (`consent.scope`).
    pub key: &'static str,
    /// Its number among the common metadata items; `None` for AMED's own entries.
    pub item: Option<u8>,
    pub label: Label,
    /// Required in every DMP (some others are required under conditions: see `validate`).
    pub mandatory: bool,
}

const fn f(
    key: &'static str,
    item: u8,
    ja: &'static str,
    en: &'static str,
    mandatory: bool,
) -> Field {
    Field {
        key,
        item: if item == 0 { None } else { Some(item) },
        label: Label { ja, en },
        mandatory,
    }
}

/// Every field, in the order of the common metadata items, then AMED's.
#[rustfmt::skip]
pub const FIELDS: &[Field] = &[
    f("funder", 1, "資金配分機関情報", "Funder", true),
    f("funding_stream_code", 2, "体系的番号におけるプログラム情報コード", "Funding stream code in Japan Grant Number", false),
    f("program_name", 3, "プログラム名", "Program name", false),
    f("japan_grant_number", 4, "体系的番号", "Japan Grant Number", true),
    f("project_name", 5, "プロジェクト名", "Project name", true),
    f("data_no", 6, "データNo.", "Data No.", true),
    f("title", 7, "データの名称", "Title of data", true),
    f("date_issued", 8, "掲載日・掲載更新日", "Date issued / updated", true),
    f("description", 9, "データの説明", "Description", true),
    f("research_field", 10, "データの分野", "Research field", true),
    f("data_type", 11, "データ種別", "Data type", true),
    f("approximate_size", 12, "概略データ量", "Approximate data size", false),
    f("utilisation_policy", 13, "管理対象データの利活用・提供方針", "Data utilisation and provision policy", true),
    f("access_rights", 14, "アクセス権", "Access rights", true),
    f("publication_date", 15, "公開予定日", "Scheduled publication date", false),
    f("repository", 16, "リポジトリ情報", "Repository information", false),
    f("repository_url", 17, "リポジトリURL・DOIリンク", "Repository URL / DOI link", false),
    f("creators", 18, "データ作成者", "Data creator", false),
    f("creators[].name", 18, "データ作成者の氏名", "Data creator's name", false),
    f("creators[].erad_researcher_number", 18, "データ作成者の e-Rad 研究者番号", "Data creator's e-Rad researcher number", false),
    f("hosting_institution", 19, "データ管理機関", "Hosting institution", true),
    f("hosting_institution_id", 20, "データ管理機関コード", "Hosting institution identifier", false),
    f("data_manager", 21, "データ管理者", "Data manager", true),
    f("data_manager_erad_number", 22, "データ管理者の e-Rad 研究者番号", "Data manager e-Rad researcher number", false),
    f("data_manager_contact", 23, "データ管理者の連絡先", "Data manager contact", true),
    f("data_manager_contact.organisation", 23, "所属組織名", "Organisation", true),
    f("data_manager_contact.address", 23, "住所", "Address", false),
    f("data_manager_contact.phone", 23, "電話番号", "Phone", false),
    f("data_manager_contact.email", 23, "メールアドレス", "E-mail", true),
    f("remarks", 24, "備考", "Remarks", false),
    f("management_category", 0, "管理区分", "Management category", true),
    f("restricted_sharing_ends", 0, "制限共有の終了日", "End of restricted sharing", false),
    f("category_after", 0, "制限共有終了後の管理区分", "Category after restricted sharing", false),
    f("consent", 0, "インフォームド・コンセント", "Informed consent", true),
    f("consent.obtained", 0, "同意の取得", "Consent obtained", true),
    f("consent.form", 0, "同意書の様式", "Consent form", false),
    f("consent.scope", 0, "同意の範囲", "Consent scope", true),
    f("providing_institution", 0, "データ提供機関", "Data-providing institution", true),
    f("providing_institution.id", 0, "データ提供機関の識別子", "Data-providing institution identifier", true),
    f("providing_institution.name", 0, "データ提供機関名", "Data-providing institution name", true),
];

/// The field of this key (`creators[2].name` is `creators[].name`); `None` for a key that is
/// not ours.
pub fn field(key: &str) -> Option<&'static Field> {
    let generic = generic_key(key);
    FIELDS.iter().find(|f| f.key == generic)
}

/// `creators[2].name` → `creators[].name`.
fn generic_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The label of a key; a placeholder in both languages for a key that is not ours.
pub fn label_of(key: &str) -> Label {
    field(key).map(|f| f.label).unwrap_or(Label {
        ja: "(不明な項目)",
        en: "(unknown field)",
    })
}

/// e-Rad's research field codes (データの分野), with their names.
#[rustfmt::skip]
pub const RESEARCH_FIELDS: &[(&str, Label)] = &[
    ("189", Label { ja: "ライフサイエンス", en: "Life science" }),
    ("289", Label { ja: "情報通信", en: "Informatics" }),
    ("389", Label { ja: "環境", en: "Environmental science" }),
    ("489", Label { ja: "ナノテク・材料", en: "Nanotechnology / materials" }),
    ("589", Label { ja: "エネルギー", en: "Energy engineering" }),
    ("689", Label { ja: "ものづくり技術", en: "Manufacturing technology" }),
    ("789", Label { ja: "社会基盤", en: "Social infrastructure" }),
    ("889", Label { ja: "フロンティア", en: "Frontier technology" }),
    ("900", Label { ja: "人文・社会", en: "Humanities and social sciences" }),
    ("1000", Label { ja: "自然科学一般", en: "Natural science" }),
    ("9999", Label { ja: "その他", en: "Others" }),
];
