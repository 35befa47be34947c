//! Google Business Profile reviews, for the `sync-google-reviews` job: an OAuth refresh token
//! is exchanged for an access token (`POST {token_url}`, form `grant_type=refresh_token`), then
//! `GET {base}/v4/accounts/{account}/locations/{location}/reviews?orderBy=updateTime desc`
//! is read page by page (`nextPageToken`), newest first, up to [`MAX_PAGES`].
//!
//! It lives with the other vendor adapters; the scheduler only sees the
//! [`GoogleReviews`] port. Errors name the status and Google's message, never a token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::scheduler::{GoogleReview, GoogleReviews, GoogleReviewsResult};
use crate::secret::Secret;

/// Pages read per sync (50 reviews each): the daily job needs the recent ones only.
pub const MAX_PAGES: usize = 4;

/// Where the adapter reads from and how it signs in.
#[derive(Debug, Clone)]
pub struct GoogleReviewsConfig {
    /// `GOOGLE_REVIEWS_API_BASE` (`https://mybusiness.googleapis.com`).
    pub api_base: String,
    /// `GOOGLE_OAUTH_TOKEN_URL` (`https://oauth2.googleapis.com/token`).
    pub token_url: String,
    /// The Business Profile account id (digits, without `accounts/`).
    pub account_id: String,
    /// The location id (digits, without `locations/`).
    pub location_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// A refresh token with the `business.manage` scope.
    pub refresh_token: Secret,
}

/// The reqwest adapter.
#[derive(Debug, Clone)]
pub struct GoogleBusinessReviews {
    client: reqwest::Client,
    config: GoogleReviewsConfig,
}

impl GoogleBusinessReviews {
    /// An adapter with a request `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: GoogleReviewsConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            config,
        })
    }

    async fn access_token(&self) -> Result<Secret, String> {
        let c = &self.config;
        let response = self
            .client
            .post(&c.token_url)
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.expose()),
                ("refresh_token", c.refresh_token.expose()),
            ])
            .send()
            .await
            .map_err(|e| format!("google token: {}", e.without_url()))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let why = body
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("no error given");
            return Err(format!("google token: HTTP {}: {why}", status.as_u16()));
        }
        body.get("access_token")
            .and_then(|v| v.as_str())
            .map(Secret::new)
            .ok_or_else(|| "google token: answer without access_token".to_string())
    }

    async fn fetch(&self) -> Result<Vec<GoogleReview>, String> {
        let token = self.access_token().await?;
        let c = &self.config;
        let url = format!(
            "{}/v4/accounts/{}/locations/{}/reviews",
            c.api_base.trim_end_matches('/'),
            c.account_id,
            c.location_id
        );
        let mut reviews = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("pageSize", "50".to_string()),
                ("orderBy", "updateTime desc".to_string()),
            ];
            if let Some(t) = &page_token {
                query.push(("pageToken", t.clone()));
            }
            let response = self
                .client
                .get(&url)
                .bearer_auth(token.expose())
                .query(&query)
                .send()
                .await
                .map_err(|e| format!("google reviews: {}", e.without_url()))?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if !status.is_success() {
                let why = body
                    .pointer("/error/message")
                    .and_then(|v| v.as_str())
                    .unwrap_or("no message");
                return Err(format!("google reviews: HTTP {}: {why}", status.as_u16()));
            }
            reviews.extend(
                body.get("reviews")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(review),
            );
            page_token = body
                .get("nextPageToken")
                .and_then(|v| v.as_str())
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if page_token.is_none() {
                break;
            }
        }
        Ok(reviews)
    }
}

/// One review of Google's answer; `None` without an id or a star rating.
fn review(v: &serde_json::Value) -> Option<GoogleReview> {
    let rating = match v.get("starRating")?.as_str()? {
        "ONE" => 1,
        "TWO" => 2,
        "THREE" => 3,
        "FOUR" => 4,
        "FIVE" => 5,
        _ => return None,
    };
    Some(GoogleReview {
        external_id: v.get("reviewId")?.as_str()?.to_string(),
        rating,
        comment: v
            .get("comment")
            .and_then(|c| c.as_str())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        // Google gives a display name only: matching it to a customer would be a guess.
        customer_id: None,
    })
}

impl GoogleReviews for GoogleBusinessReviews {
    fn recent_reviews(&self) -> Pin<Box<dyn Future<Output = GoogleReviewsResult> + Send + '_>> {
        Box::pin(async move { self.fetch().await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_maps_its_star_rating_and_drops_an_empty_comment() {
        let r = review(&serde_json::json!({
            "reviewId": "r1", "starRating": "FOUR", "comment": "  ",
            "reviewer": {"displayName": "Pat"}
        }))
        .expect("review");
        assert_eq!(
            (r.external_id.as_str(), r.rating, r.comment),
            ("r1", 4, None)
        );
        assert!(review(
            &serde_json::json!({"reviewId": "r2", "starRating": "STAR_RATING_UNSPECIFIED"})
        )
        .is_none());
    }
}
