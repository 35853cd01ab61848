//! RecordsRead: one record's newest write and its data, or, for a deleted record, a 404 that
//! still carries the delete and the initial write (so a client can tell "deleted" from "never
//! existed").

use dehr_store::{DataKey, IndexValue, Pagination, Sort};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth;
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::filter::RecordsFilter;
use crate::grants::GrantUse;
use crate::message::{Authorization, check_timestamp, parse_json};
use crate::records_write::{RecordMessage, RecordsWrite};
use crate::reply::Reply;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsReadDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub filter: RecordsFilter,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsReadMessage {
    pub descriptor: RecordsReadDescriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

impl Dwn {
    pub(crate) async fn handle_records_read(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let message: RecordsReadMessage = parse_json(raw, "RecordsRead")?;
        let d = &message.descriptor;
        if d.interface != "Records" || d.method != "Read" {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "descriptor must have interface Records and method Read",
            );
        }
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        d.filter.validate()?;
        let sender = match &message.authorization {
            Some(a) => {
                let sender = auth::parse_sender(a, d, true)?;
                auth::authenticate(Some(a), self.resolver.as_ref()).await?;
                Some(sender)
            }
            None => None,
        };

        let filter = d
            .filter
            .to_store_filter(None)
            .eq("interface", IndexValue::Str("Records".into()))
            .eq("isLatestBaseState", IndexValue::Bool(true));
        let sort = Sort {
            property: "messageTimestamp".into(),
            direction: dehr_store::Direction::Ascending,
        };
        let found = self
            .store
            .query(tenant, &[filter], &sort, &Pagination::default())
            .await?
            .messages;
        if found.len() > 1 {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "Multiple records exist for the RecordsRead filter",
            );
        }
        let Some(matched) = found.into_iter().next() else {
            return Ok(Reply::new(404, "Not Found"));
        };
        let matched = RecordMessage::decode(matched)?;

        if !matched.is_write {
            let record_id = matched.value["descriptor"]["recordId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let Some(initial) = self.find_initial_write(tenant, &record_id).await? else {
                return fail(
                    ErrorCode::RecordNotFound,
                    "Initial write for deleted record not found",
                );
            };
            let initial_write = RecordsWrite::from_message(initial.write_message()?)?;
            self.authorize_records_read(
                tenant,
                sender.as_ref(),
                &initial_write,
                &d.message_timestamp,
            )
            .await?;
            return Ok(Reply::new(404, "Not Found").with(
                "entry",
                json!({ "recordsDelete": matched.value, "initialWrite": initial.value }),
            ));
        }

        let write = RecordsWrite::from_message(matched.write_message()?)?;
        self.authorize_records_read(tenant, sender.as_ref(), &write, &d.message_timestamp)
            .await?;

        let mut reply = Reply::ok();
        let data = match &matched.stored.encoded_data {
            Some(encoded) => {
                let bytes = dehr_core::encoding::b64url_decode(encoded).map_err(|e| {
                    DwnError::new(
                        ErrorCode::StorageFailure,
                        format!("stored data is not base64url: {e}"),
                    )
                })?;
                let stream: dehr_store::DataStream =
                    Box::pin(stream::once(async move { Ok(bytes::Bytes::from(bytes)) }));
                stream
            }
            None => {
                let key = DataKey {
                    record_id: write.message.record_id.clone(),
                    data_cid: write.message.descriptor.data_cid.clone(),
                };
                match self.store.data_get(tenant, &key).await? {
                    Some(blob) => blob.stream,
                    None => return Ok(Reply::new(404, "Not Found")),
                }
            }
        };
        let mut entry = json!({ "recordsWrite": matched.value });
        if !matched.is_initial_write()
            && let Some(initial) = self.initial_write(tenant, &matched).await?
        {
            entry["initialWrite"] = initial;
        }
        reply = reply.with("entry", entry);
        reply.data = Some(data);
        Ok(reply)
    }

    pub(crate) async fn find_initial_write(
        &self,
        tenant: &str,
        record_id: &str,
    ) -> Result<Option<RecordMessage>, DwnError> {
        let messages = crate::records_write::record_messages(self, tenant, record_id).await?;
        Ok(messages
            .into_iter()
            .find(|m| m.is_write && m.is_initial_write()))
    }

    /// Who may read a record: a delegate within its grant (checked before anything else), the
    /// tenant, anyone if it is published, its author and recipient, a grantee within its grant,
    /// or whom the protocol's rules allow.
    async fn authorize_records_read(
        &self,
        tenant: &str,
        sender: Option<&auth::Sender>,
        write: &RecordsWrite,
        message_timestamp: &str,
    ) -> Result<(), DwnError> {
        let m = &write.message;
        let d = &m.descriptor;
        let verify_scope = |grant: &crate::grants::PermissionGrant| {
            grant.verify_record_scope(
                d.protocol.as_deref(),
                m.context_id.as_deref(),
                d.protocol_path.as_deref(),
            )
        };
        if let Some(sender) = sender
            && let Some(delegated) = &sender.delegated_grant
        {
            delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.signer,
                        grantor: &sender.author,
                        interface: "Records",
                        method: "Read",
                        message_timestamp,
                    },
                )
                .await?;
            verify_scope(&delegated.grant)?;
        }
        let author = sender.map(|s| s.author.as_str());
        if author == Some(tenant) || d.published == Some(true) {
            return Ok(());
        }
        if let Some(author) = author
            && (Some(author) == d.recipient.as_deref() || author == write.author)
        {
            return Ok(());
        }
        if let Some(sender) = sender
            && let Some(grant_id) = &sender.payload.permission_grant_id
        {
            let grant = self.fetch_grant(tenant, grant_id).await?;
            grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.author,
                        grantor: tenant,
                        interface: "Records",
                        method: "Read",
                        message_timestamp,
                    },
                )
                .await?;
            return verify_scope(&grant);
        }
        if d.protocol.is_some() {
            let role = sender.and_then(|s| s.payload.protocol_role.as_deref());
            return crate::protocol_authorization::authorize_read(
                self, tenant, author, role, write,
            )
            .await;
        }
        fail(
            ErrorCode::RecordsReadUnauthorized,
            "message failed authorization",
        )
    }
}
