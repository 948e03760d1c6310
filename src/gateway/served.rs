//! The connectors' HTTP routes (webhooks, the API, a Matrix appservice), replaceable while
//! the listener runs: a reload that adds, changes or removes such an account swaps them
//! without closing the listener or touching the gateway's own routes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;
use patchbay_sdk::sync::{read, write};

/// Every running account's routes, merged, behind one fallback of the listener's router.
#[derive(Clone, Default)]
pub(super) struct Served {
    /// Account name -> its routes, kept to merge again when one account comes or goes.
    accounts: Arc<RwLock<BTreeMap<String, Router>>>,
    /// The merge of `accounts`, what requests are served by.
    merged: Arc<RwLock<Router>>,
}

impl Served {
    /// Serve `routes` for `account` from the next request on (replacing what it served).
    pub(super) fn insert(&self, account: &str, routes: Router) {
        let mut accounts = write(&self.accounts);
        accounts.insert(account.to_owned(), routes);
        self.merge(&accounts);
    }

    /// Stop serving `account`'s routes (404 from the next request on).
    pub(super) fn remove(&self, account: &str) {
        let mut accounts = write(&self.accounts);
        if accounts.remove(account).is_some() {
            self.merge(&accounts);
        }
    }

    fn merge(&self, accounts: &BTreeMap<String, Router>) {
        let merged = accounts
            .values()
            .cloned()
            .fold(Router::new(), Router::merge);
        *write(&self.merged) = merged;
    }

    /// The router to merge into the listener's: every path it does not route itself goes to
    /// the connectors' routes in force at that request.
    pub(super) fn router(&self) -> Router {
        let merged = Arc::clone(&self.merged);
        Router::new().fallback(move |request: Request| {
            let app = read(&merged).clone();
            async move {
                let answer: Result<Response, std::convert::Infallible> =
                    TowerToHyperService::new(app).call(request).await;
                match answer {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    }
}
