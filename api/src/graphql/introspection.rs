//! Introspection refused with an error when it is off (`APP_ENV=production` without
//! `GRAPHQL_INTROSPECTION=on`). async-graphql's `disable_introspection` alone answers
//! `__schema` and `__type` with `null` and no error, which a client or code generator takes
//! for an empty schema rather than for a refusal.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ErrorExtensionValues, ServerError, ServerResult, Value};

/// Answers `__schema` and `__type` with a `FORBIDDEN` error (installed by `graphql::schema`
/// when introspection is off). `__typename` stays: clients need it to read unions.
#[derive(Debug, Default)]
pub struct RefuseIntrospection;

impl ExtensionFactory for RefuseIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RefuseIntrospection)
    }
}

#[async_trait::async_trait]
impl Extension for RefuseIntrospection {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Both fields exist on the query root only, so the name is enough.
        if matches!(info.name, "__schema" | "__type") {
            let mut e = ServerError::new(
                "introspection is turned off on this server (GRAPHQL_INTROSPECTION)",
                None,
            );
            let mut ext = ErrorExtensionValues::default();
            ext.set("code", "FORBIDDEN");
            e.extensions = Some(ext);
            return Err(e);
        }
        next.run(ctx, info).await
    }
}
