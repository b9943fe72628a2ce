//! `forge-node account create|credit|show`: accounts in the node's ledger.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use forge_api::Ledger;

/// Arguments of `account`.
#[derive(Debug, Args)]
pub(crate) struct AccountArgs {
    /// The ledger database [default: $FORGE_HOME/ledger.sqlite].
    #[arg(long, env = "FORGE_LEDGER", value_name = "FILE", global = true)]
    ledger: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create an account with a fresh API key (printed once; only its hash is stored).
    Create {
        /// A unique name.
        #[arg(long)]
        name: String,
        /// Initial credit, in milli-CU.
        #[arg(long, value_name = "MILLI_CU")]
        credit: Option<u64>,
    },
    /// Add credit to an account.
    Credit {
        /// The account's name or API key.
        account: String,
        /// Amount in milli-CU (1 CU = 1000 milli-CU = 10^9 FLOPs).
        milli_cu: u64,
        /// A note kept with the credit.
        #[arg(long)]
        note: Option<String>,
    },
    /// Show an account's balance, derived from its credits and receipts.
    Show {
        /// The account's name or API key.
        account: String,
    },
}

/// Runs one account action.
pub(crate) fn account(args: AccountArgs) -> Result<()> {
    let path = match args.ledger {
        Some(p) => p,
        None => forge_node::forge_home()?.join("ledger.sqlite"),
    };
    let ledger =
        Ledger::open(&path).with_context(|| format!("opening the ledger {}", path.display()))?;
    match args.action {
        Action::Create { name, credit } => {
            let (account, key) = ledger.create_account(&name)?;
            if let Some(c) = credit.filter(|&c| c > 0) {
                ledger.credit(&account, c, Some("initial credit"))?;
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"name": account.name, "api_key": key, "credit_milli_cu": credit.unwrap_or(0)})
                );
            } else {
                println!("{key}");
                eprintln!(
                    "account `{}` created; the API key above is shown only once",
                    account.name
                );
            }
        }
        Action::Credit {
            account,
            milli_cu,
            note,
        } => {
            let a = ledger.find_account(&account)?;
            ledger.credit(&a, milli_cu, note.as_deref())?;
            show(&ledger, &account, args.json)?;
        }
        Action::Show { account } => show(&ledger, &account, args.json)?,
    }
    Ok(())
}

fn show(ledger: &Ledger, who: &str, json: bool) -> Result<()> {
    let a = ledger.find_account(who)?;
    let b = ledger.balance(&a)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": a.name,
                "credited_milli_cu": b.credited_milli_cu,
                "spent_milli_cu": b.spent_milli_cu,
                "balance_milli_cu": b.balance_milli_cu,
                "receipts": b.receipts,
            })
        );
    } else {
        println!(
            "{}: balance {} milli-CU (credited {}, spent {} over {} receipts)",
            a.name, b.balance_milli_cu, b.credited_milli_cu, b.spent_milli_cu, b.receipts
        );
    }
    Ok(())
}
