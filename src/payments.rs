//! Payments settings: what CutX sells (the catalog and its Stripe prices) and Stripe's webhook
//! signing secrets. billing-svc takes the catalog, webhook-svc the secrets.

use std::path::PathBuf;

use anyhow::Context;
use billing_svc::catalog::Catalog;
use clap::Args;
use cutx_platform::secret::Secret;

/// What billing-svc sells.
#[derive(Args, Clone, Debug, Default)]
pub struct CatalogArgs {
    /// A JSON file of packs and plans replacing the reference product's (see billing-svc's
    /// catalog module for its shape).
    #[arg(long, env = "CUTX_CATALOG_FILE")]
    pub catalog_file: Option<PathBuf>,
    /// Stripe price ids for the catalog's items: `pack_50=price_...,starter=price_...`.
    #[arg(long, env = "CUTX_STRIPE_PRICES", default_value = "")]
    pub stripe_prices: String,
}

impl CatalogArgs {
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        let catalog = match &self.catalog_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("CUTX_CATALOG_FILE: reading {}", path.display()))?;
                Catalog::from_json(&text).with_context(|| format!("CUTX_CATALOG_FILE {}", path.display()))?
            }
            None => Catalog::reference(),
        };
        catalog.with_prices(&self.stripe_prices).context("CUTX_STRIPE_PRICES")
    }
}

/// Stripe's API, for checkout and the customer portal.
#[derive(Args, Clone, Debug)]
pub struct StripeApiArgs {
    /// Stripe's secret API key (`sk_...`). Unset, checkout and the portal answer 503
    /// (`UNAVAILABLE`) and everything else works.
    #[arg(long, env = "CUTX_STRIPE_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub stripe_secret_key: Option<Secret>,
    /// Where Stripe's API is (tests point it at localstripe behind a fake); without `/v1`.
    #[arg(long, env = "CUTX_STRIPE_BASE_URL", default_value = "https://api.stripe.com")]
    pub stripe_base_url: String,
}

impl Default for StripeApiArgs {
    fn default() -> Self {
        Self { stripe_secret_key: None, stripe_base_url: "https://api.stripe.com".into() }
    }
}

impl StripeApiArgs {
    /// The checkout client, if a key is set; users come back to pages under `public_url`.
    pub fn checkout(
        &self,
        public_url: Option<&str>,
    ) -> anyhow::Result<Option<std::sync::Arc<dyn billing_svc::checkout::Checkout>>> {
        let Some(key) = &self.stripe_secret_key else { return Ok(None) };
        if !key.expose().starts_with("sk_") && !key.expose().starts_with("rk_") {
            anyhow::bail!("CUTX_STRIPE_SECRET_KEY must be a secret or restricted key (sk_... or rk_...)");
        }
        let base = crate::config::service_url(&self.stripe_base_url, "CUTX_STRIPE_BASE_URL")?;
        let public_url = public_url.context("CUTX_PUBLIC_URL is needed with Stripe: it sends buyers back there")?;
        let urls = billing_svc::stripe_client::ReturnUrls::under(public_url);
        let client = billing_svc::stripe_client::StripeCheckout::new(key, &base, urls)
            .map_err(|e| anyhow::anyhow!("CUTX_STRIPE_BASE_URL: {e}"))?;
        Ok(Some(std::sync::Arc::new(client)))
    }
}

/// Stripe's webhooks.
#[derive(Args, Clone, Debug, Default)]
pub struct StripeWebhookArgs {
    /// The webhook endpoint's signing secrets (`whsec_...`), comma-separated while one is rolled.
    /// Unset, `/webhooks/stripe` answers 503.
    #[arg(long, env = "CUTX_STRIPE_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub stripe_webhook_secret: Option<Secret>,
}

fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value.to_string()))
}

impl StripeWebhookArgs {
    pub fn secrets(&self) -> Vec<Secret> {
        let Some(all) = &self.stripe_webhook_secret else { return Vec::new() };
        all.expose().split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Secret::new(s.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_webhook_secrets_are_read_from_one_comma_separated_setting() {
        let args = StripeWebhookArgs { stripe_webhook_secret: Some(Secret::new("whsec_a, whsec_b,,".into())) };
        let secrets: Vec<String> = args.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert_eq!(secrets, ["whsec_a", "whsec_b"]);
        assert!(StripeWebhookArgs::default().secrets().is_empty());
    }

    #[test]
    fn a_bad_price_setting_is_an_error_naming_the_setting() {
        let args = CatalogArgs { catalog_file: None, stripe_prices: "nothing=price_1".into() };
        let e = format!("{:#}", args.catalog().unwrap_err());
        assert!(e.contains("CUTX_STRIPE_PRICES") && e.contains("nothing"), "{e}");
        let args = CatalogArgs { catalog_file: None, stripe_prices: "pro=price_1".into() };
        assert_eq!(args.catalog().unwrap().plan("pro").unwrap().stripe_price.as_deref(), Some("price_1"));
    }
}
