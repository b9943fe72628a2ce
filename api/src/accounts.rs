//! Who pays: bearer-key authentication, and credit held for requests in flight.
//!
//! A node with no accounts in its ledger is open (no key needed, nothing
//! charged). Once any account exists, every API request must carry
//! `Authorization: Bearer <key>` of a known account. Before any work, the
//! request's worst-case cost (its prompt plus `max_tokens` generated) is
//! held against the account's balance; the hold is released when the
//! receipt (and its actual charge) is durably recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::ledger::{Account, Ledger, LedgerError};
use crate::state::AppState;

/// Credit held per account for requests in flight (in memory: a restart
/// releases every hold, and only recorded receipts charge).
#[derive(Debug, Default)]
pub(crate) struct Holds {
    held: Mutex<HashMap<String, u64>>,
}

/// Who pays for a job, and the credit held for it.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    /// The account's id (`None` on an open node).
    pub(crate) account: Option<String>,
    hold: Option<Hold>,
}

#[derive(Debug)]
struct Hold {
    holds: Arc<Holds>,
    account: String,
    amount: u64,
    released: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.released {
            let mut held = self.holds.lock();
            release(&mut held, &self.account, self.amount);
        }
    }
}

fn release(held: &mut HashMap<String, u64>, account: &str, amount: u64) {
    if let Some(v) = held.get_mut(account) {
        *v = v.saturating_sub(amount);
        if *v == 0 {
            held.remove(account);
        }
    }
}

impl Holds {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds `amount` of `account`'s balance for each of `count` jobs (the
    /// choices of one request), all or none, or refuses with 429
    /// `insufficient_quota` (blocking: reads the ledger). Each job's receipt
    /// settles its own hold.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        ledger: &Ledger,
        account: &Account,
        amount: u64,
        count: usize,
    ) -> Result<Vec<Charge>, ApiError> {
        let total = amount.saturating_mul(count as u64);
        let mut held = self.lock();
        let balance = ledger
            .balance(account)
            .map_err(ledger_error)?
            .balance_milli_cu;
        let on_hold = held.get(&account.id).copied().unwrap_or(0);
        let available = balance.saturating_sub(i64::try_from(on_hold).unwrap_or(i64::MAX));
        if available < 0 || (available as u64) < total {
            return Err(ApiError::insufficient_quota(total, available));
        }
        let slot = held.entry(account.id.clone()).or_default();
        *slot = slot.saturating_add(total);
        Ok((0..count)
            .map(|_| Charge {
                account: Some(account.id.clone()),
                hold: Some(Hold {
                    holds: Arc::clone(self),
                    account: account.id.clone(),
                    amount,
                    released: false,
                }),
            })
            .collect())
    }

    /// Runs `write` (which records the charge) and releases the hold, both
    /// under the lock `reserve` takes, so no reservation sees the charge and
    /// the hold at once, or neither.
    pub(crate) fn settle<T>(
        &self,
        charge: Charge,
        write: impl FnOnce() -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let mut held = self.lock();
        let out = write();
        if let Some(mut h) = charge.hold {
            release(&mut held, &h.account, h.amount);
            h.released = true;
        }
        out
    }
}

pub(crate) fn ledger_error(e: LedgerError) -> ApiError {
    ApiError::internal(format!("ledger: {e}"))
}

/// The authenticated caller: `None` on an open node.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Option<Account>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_string));
        let ledger = state.ledger();
        tokio::task::spawn_blocking(move || {
            if !ledger.has_accounts().map_err(ledger_error)? {
                return Ok(Caller(None));
            }
            let key = match header {
                None => {
                    return Err(ApiError::unauthorized(
                        "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
                    ));
                }
                Some(Err(_)) => {
                    return Err(ApiError::unauthorized(
                        "The Authorization header is not valid ASCII",
                    ));
                }
                Some(Ok(h)) => match h.split_once(' ') {
                    Some((scheme, key))
                        if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() =>
                    {
                        key.trim().to_string()
                    }
                    _ => {
                        return Err(ApiError::unauthorized(
                            "Expected `Authorization: Bearer <key>`",
                        ));
                    }
                },
            };
            match ledger.account_by_key(&key).map_err(ledger_error)? {
                Some(a) => Ok(Caller(Some(a))),
                None => Err(ApiError::unauthorized("Incorrect API key provided")),
            }
        })
        .await
        .map_err(|e| ApiError::internal(format!("authentication task: {e}")))?
    }
}
