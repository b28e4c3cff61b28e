//! What `POST /jobs` checks of a job's `webhooks` and `integrations`: the
//! server must allow them (`--allow-job-webhooks`, `--mlflow-tracking-uri`)
//! and each must be well formed, so that a job is refused at submission
//! rather than failing to report later.

use crate::api::{ApiError, ServeConfig};
use crate::integrations::{is_http_url, Integration, WebhookTarget};

/// Most receivers one job may name.
const MAX_JOB_WEBHOOKS: usize = 8;

/// Refuses a job's webhooks and integrations where the server does not take
/// them, and malformed ones (422 naming the field: `webhooks[0].url`, …).
pub(super) fn validate(
    webhooks: &[WebhookTarget],
    integrations: &[Integration],
    config: &ServeConfig,
) -> Result<(), ApiError> {
    if !webhooks.is_empty() && !config.allow_job_webhooks {
        return Err(ApiError::invalid(
            "webhooks",
            "this server does not take webhooks per job (its operator can allow them with \
             --allow-job-webhooks)",
        ));
    }
    if webhooks.len() > MAX_JOB_WEBHOOKS {
        let message = format!("at most {MAX_JOB_WEBHOOKS} receivers");
        return Err(ApiError::invalid("webhooks", message));
    }
    if let Some(i) = webhooks.iter().position(|w| !is_http_url(&w.url)) {
        return Err(ApiError::invalid(
            format!("webhooks[{i}].url"),
            "must be an absolute http:// or https:// URL",
        ));
    }
    if integrations.len() > 1 {
        return Err(ApiError::invalid("integrations", "at most one integration"));
    }
    for (i, m) in integrations.iter().filter_map(|x| x.mlflow()).enumerate() {
        if config.mlflow_tracking_uri.is_none() {
            return Err(ApiError::invalid(
                format!("integrations[{i}]"),
                "this server has no MLflow tracking server (its operator can name one with \
                 --mlflow-tracking-uri)",
            ));
        }
        let name_ok = |s: &str| !s.trim().is_empty() && s.len() <= 250;
        if !name_ok(&m.experiment) {
            let message = "must be 1 to 250 characters, not all blank";
            return Err(ApiError::invalid(
                format!("integrations[{i}].experiment"),
                message,
            ));
        }
        if m.run_name.as_deref().is_some_and(|n| !name_ok(n)) {
            let message = "must be 1 to 250 characters, not all blank";
            return Err(ApiError::invalid(
                format!("integrations[{i}].run_name"),
                message,
            ));
        }
        if let Some(key) = m
            .tags
            .keys()
            .find(|k| !name_ok(k) || k.starts_with("mlflow."))
        {
            return Err(ApiError::invalid(
                format!("integrations[{i}].tags"),
                format!("tag `{key}`: names are 1 to 250 characters and not `mlflow.…`"),
            ));
        }
    }
    Ok(())
}
