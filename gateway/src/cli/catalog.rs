//! `vre catalog`: search the public catalog, without a token.

use clap::Subcommand;

use super::shared::{ClientArgs, PageArgs, get_list, print_as, query, shown_line};
use crate::wire::catalog::CatalogEntry;

#[derive(Subcommand)]
pub(super) enum CatalogCommand {
    /// Search the datasets open to secondary use by their title, description or keywords, in
    /// any case and either language (no token needed; an empty QUERY lists every one).
    Search {
        query: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn catalog(c: CatalogCommand) -> anyhow::Result<std::process::ExitCode> {
    match c {
        CatalogCommand::Search {
            query: q,
            page,
            client,
        } => {
            let path = format!(
                "/api/v1/catalog{}",
                query([("q", Some(q)), ("limit", page.limit.map(|l| l.to_string())),])
            );
            let items: Vec<CatalogEntry> =
                get_list(&client.public_client()?, &path, page.all).await?;
            print_as(&client, &items, |items| items.iter().for_each(print_entry));
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_entry(e: &CatalogEntry) {
    println!("{}  {}: {}", e.id, e.category, shown_line(&e.title));
    println!(
        "  {} ({}); {}",
        shown_line(&e.institution_name),
        e.institution,
        shown_line(&e.data_type)
    );
    if let Some(until) = &e.restricted_until {
        println!("  restricted until {until}");
    }
}
