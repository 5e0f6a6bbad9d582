//! What CutX sells: credit packs (paid once) and monthly plans, each with the Stripe price a
//! checkout uses. The reference product's packs and plans are the defaults; a JSON file replaces
//! them, and a list of `item=price_...` pairs attaches Stripe price ids to the defaults.
//!
//! ```json
//! {"packs": [{"id": "pack_50", "credits": 50, "price": 499, "currency": "usd", "stripe_price": "price_..."}],
//!  "plans": [{"id": "starter", "name": "Starter", "credits_per_month": 100, "price": 999, "currency": "usd", "stripe_price": "price_..."}]}
//! ```

use cutx_platform::credits::Credits;
use serde::{Deserialize, Deserializer};

/// A count of credits in the file: a whole number, zero or more (positive is checked after).
fn credits<'de, D: Deserializer<'de>>(d: D) -> Result<Credits, D::Error> {
    Credits::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// A credit pack.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    pub id: String,
    #[serde(deserialize_with = "credits")]
    pub credits: Credits,
    /// In the currency's smallest unit (cents).
    pub price: i64,
    pub currency: String,
    /// The Stripe price a checkout of this pack charges; none, it cannot be bought yet.
    #[serde(default)]
    pub stripe_price: Option<String>,
}

/// A monthly plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// Granted with each paid invoice.
    #[serde(deserialize_with = "credits")]
    pub credits_per_month: Credits,
    /// In the currency's smallest unit (cents), a month.
    pub price: i64,
    pub currency: String,
    #[serde(default)]
    pub stripe_price: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub packs: Vec<Pack>,
    pub plans: Vec<Plan>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("the catalog is not valid JSON of packs and plans: {0}")]
    Json(String),
    #[error("the catalog names {0:?} twice")]
    Duplicate(String),
    #[error("the catalog's {item:?}: {why}")]
    Item { item: String, why: &'static str },
    #[error("Stripe price {0:?} is given to two items")]
    SharedPrice(String),
    #[error("{0:?} is not item=price_id")]
    PricePair(String),
    #[error("no pack or plan is called {0:?}")]
    NoSuchItem(String),
}

impl Catalog {
    /// The reference product's packs and plans, without Stripe prices.
    pub fn reference() -> Self {
        let pack = |credits: u32, price: i64| Pack {
            id: format!("pack_{credits}"),
            credits: Credits::from_u32(credits),
            price,
            currency: "usd".into(),
            stripe_price: None,
        };
        let plan = |id: &str, name: &str, credits: u32, price: i64| Plan {
            id: id.into(),
            name: name.into(),
            credits_per_month: Credits::from_u32(credits),
            price,
            currency: "usd".into(),
            stripe_price: None,
        };
        Self {
            packs: vec![pack(50, 499), pack(150, 1299), pack(500, 3999), pack(1500, 9999)],
            plans: vec![
                plan("starter", "Starter", 100, 999),
                plan("pro", "Pro", 500, 2999),
                plan("agency", "Agency", 2000, 9999),
            ],
        }
    }

    /// A catalog from its JSON, checked.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let catalog: Self = serde_json::from_str(text).map_err(|e| CatalogError::Json(e.to_string()))?;
        catalog.checked()
    }

    /// Attaches Stripe price ids: `pack_50=price_...,starter=price_...`.
    pub fn with_prices(mut self, pairs: &str) -> Result<Self, CatalogError> {
        for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (item, price) = pair.split_once('=').ok_or_else(|| CatalogError::PricePair(pair.into()))?;
            let (item, price) = (item.trim(), price.trim());
            if price.is_empty() {
                return Err(CatalogError::PricePair(pair.into()));
            }
            if let Some(pack) = self.packs.iter_mut().find(|p| p.id == item) {
                pack.stripe_price = Some(price.into());
            } else if let Some(plan) = self.plans.iter_mut().find(|p| p.id == item) {
                plan.stripe_price = Some(price.into());
            } else {
                return Err(CatalogError::NoSuchItem(item.into()));
            }
        }
        self.checked()
    }

    fn checked(self) -> Result<Self, CatalogError> {
        let mut ids = std::collections::HashSet::new();
        let mut prices = std::collections::HashSet::new();
        let items = self
            .packs
            .iter()
            .map(|p| (&p.id, p.credits, p.price, &p.currency, &p.stripe_price))
            .chain(self.plans.iter().map(|p| (&p.id, p.credits_per_month, p.price, &p.currency, &p.stripe_price)));
        for (id, credits, price, currency, stripe_price) in items {
            let bad = |why| CatalogError::Item { item: id.clone(), why };
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad("an id is 1 to 64 letters, digits, '_' or '-'"));
            }
            if credits.is_zero() {
                return Err(bad("credits must be positive"));
            }
            if price <= 0 {
                return Err(bad("the price must be positive"));
            }
            if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(bad("the currency is three lower-case letters (usd)"));
            }
            if !ids.insert(id.clone()) {
                return Err(CatalogError::Duplicate(id.clone()));
            }
            if let Some(stripe_price) = stripe_price
                && !prices.insert(stripe_price.clone())
            {
                return Err(CatalogError::SharedPrice(stripe_price.clone()));
            }
        }
        Ok(self)
    }

    pub fn pack(&self, id: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.id == id)
    }

    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan a Stripe price (or, on older APIs, plan) id bills.
    pub fn plan_by_price(&self, price: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.stripe_price.as_deref() == Some(price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_reference_products_packs_and_plans() {
        let c = Catalog::reference().checked().unwrap();
        let packs: Vec<(u32, i64)> = c.packs.iter().map(|p| (p.credits.get() as u32, p.price)).collect();
        assert_eq!(packs, [(50, 499), (150, 1299), (500, 3999), (1500, 9999)]);
        let plans: Vec<(&str, u32, i64)> =
            c.plans.iter().map(|p| (p.name.as_str(), p.credits_per_month.get() as u32, p.price)).collect();
        assert_eq!(plans, [("Starter", 100, 999), ("Pro", 500, 2999), ("Agency", 2000, 9999)]);
        assert!(c.packs.iter().all(|p| p.stripe_price.is_none()));
    }

    #[test]
    fn price_ids_attach_to_the_items_they_name() {
        let c = Catalog::reference().with_prices(" pack_50=price_a, starter=price_b ").unwrap();
        assert_eq!(c.pack("pack_50").unwrap().stripe_price.as_deref(), Some("price_a"));
        assert_eq!(c.plan_by_price("price_b").unwrap().id, "starter");
        assert_eq!(c.plan_by_price("price_a"), None, "a pack's price bills no plan");
        let refused = [
            ("nothing=price_a", CatalogError::NoSuchItem("nothing".into())),
            ("pack_50", CatalogError::PricePair("pack_50".into())),
            ("pack_50=", CatalogError::PricePair("pack_50=".into())),
            ("pack_50=price_a,pro=price_a", CatalogError::SharedPrice("price_a".into())),
        ];
        for (pairs, error) in refused {
            assert_eq!(Catalog::reference().with_prices(pairs).unwrap_err(), error, "{pairs}");
        }
    }

    #[test]
    fn a_catalog_file_is_checked_item_by_item() {
        let good = r#"{"packs":[{"id":"p1","credits":10,"price":100,"currency":"eur"}],
                       "plans":[{"id":"m1","name":"M","credits_per_month":5,"price":500,"currency":"eur","stripe_price":"price_m"}]}"#;
        let c = Catalog::from_json(good).unwrap();
        assert_eq!(c.plan("m1").unwrap().stripe_price.as_deref(), Some("price_m"));
        let item = |why| move |id: &str| CatalogError::Item { item: id.into(), why };
        let cases: Vec<(&str, CatalogError)> = vec![
            (
                r#"{"packs":[{"id":"p1","credits":0,"price":100,"currency":"usd"}],"plans":[]}"#,
                item("credits must be positive")("p1"),
            ),
            (
                r#"{"packs":[{"id":"p1","credits":1,"price":0,"currency":"usd"}],"plans":[]}"#,
                item("the price must be positive")("p1"),
            ),
            (
                r#"{"packs":[{"id":"p1","credits":1,"price":1,"currency":"USD"}],"plans":[]}"#,
                item("the currency is three lower-case letters (usd)")("p1"),
            ),
            (
                r#"{"packs":[{"id":"p 1","credits":1,"price":1,"currency":"usd"}],"plans":[]}"#,
                item("an id is 1 to 64 letters, digits, '_' or '-'")("p 1"),
            ),
            (
                r#"{"packs":[{"id":"x","credits":1,"price":1,"currency":"usd"}],"plans":[{"id":"x","name":"X","credits_per_month":1,"price":1,"currency":"usd"}]}"#,
                CatalogError::Duplicate("x".into()),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(Catalog::from_json(text).unwrap_err(), error, "{text}");
        }
        assert!(matches!(Catalog::from_json(r#"{"packs":[],"plans":[],"extra":1}"#), Err(CatalogError::Json(_))));
        assert!(matches!(
            Catalog::from_json(r#"{"packs":[{"id":"p","credits":-1,"price":1,"currency":"usd"}],"plans":[]}"#),
            Err(CatalogError::Json(_))
        ));
    }
}
