//! Compiling [`Filter`]s, sorts and cursors to SQL with the exact semantics of
//! [`crate::filter_matches`] and the memory store.
//!
//! How each rule of the reference semantics is kept:
//! * A value of another kind than the column never matches: the condition compiles to `1 = 0`
//!   instead of letting SQL convert types.
//! * A message without the property has `NULL` there, and every comparison with `NULL` is not
//!   true, so it never matches (no condition is ever negated, so three-valued logic is safe).
//! * Strings compare bytewise: SQLite's default `BINARY` collation is `memcmp` over UTF-8.
//! * A prefix is the range `[prefix, successor)` rather than `LIKE` (which is case-insensitive
//!   in SQLite and has wildcards) or `substr` (which no index can serve); see [`prefix_upper`].
//! * A tag condition holds if one element satisfies it entirely:
//!   `EXISTS (SELECT 1 FROM message_tags t WHERE … AND <condition on that row>)`.
//! * Booleans are written as the literals `0`/`1`, never bound, because SQLite uses a partial
//!   index or a literal-specific plan only when it can see the value; the statement cache keys
//!   on the text, so this adds at most two variants per query shape.
//! * NaN binds as `NULL` in SQLite, which, like NaN in the memory store, equals nothing.
//! * `interface` and `method` values are written as literals too (they are a fixed vocabulary:
//!   `Records`, `Write`, …; anything else is bound), so SQLite can use the partial index on
//!   `interface = 'Protocols'`.
//!
//! # Planning
//!
//! The database keeps no planner statistics (no `ANALYZE`), on purpose. Measured at 100k
//! records: sampled statistics (`analysis_limit`) made SQLite walk every message to find a
//! protocol's two ProtocolsConfigure messages (600 ms), and full statistics made it sort all
//! 140k records of the dominant protocol for a 20-row page (480 ms), because per-index averages
//! cannot describe one huge protocol next to many small ones. Without statistics SQLite's
//! heuristics prefer an index that yields rows in sort order, which the schema provides for
//! every hot query shape, so plans are the same on every database and sizes (see the `schema`
//! module for the indexes and the tests that check the plans). The one thing the heuristics
//! get wrong is a query narrowed by an identifier (`recordId`, `parentId`, `contextId`) but
//! sorted by a property no index of that identifier is ordered by; see [`message_query`].
//!
//! Statements are cached by text (`prepare_cached`), so the same query shape with other values
//! is prepared once per connection.

use rusqlite::types::Value as SqlValue;

use super::schema;
use crate::{
    Condition, Cursor, Direction, Filter, IndexKey, IndexValue, Range, Sort, StoreError, ValueKind,
};

const FALSE: &str = "1 = 0";
const TRUE: &str = "1 = 1";

/// SQL text with its positional (`?`) parameters.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn arg(&mut self, arg: Arg) {
        match arg {
            Arg::Bind(v) => {
                self.text.push('?');
                self.params.push(v);
            }
            Arg::Literal(l) => self.text.push_str(l),
        }
    }

    fn bind(&mut self, v: SqlValue) {
        self.arg(Arg::Bind(v));
    }
}

enum Arg {
    Bind(SqlValue),
    Literal(&'static str),
}

/// The SQL form of `value` for a column of `kind`, or `None` if the kinds differ.
fn arg(kind: ValueKind, value: &IndexValue) -> Option<Arg> {
    match (kind, value) {
        (ValueKind::Str, IndexValue::Str(s)) => Some(Arg::Bind(SqlValue::Text(s.clone()))),
        (ValueKind::Num, IndexValue::Num(n)) => Some(Arg::Bind(SqlValue::Real(*n))),
        (ValueKind::Bool, IndexValue::Bool(b)) => Some(Arg::Literal(if *b { "1" } else { "0" })),
        _ => None,
    }
}

/// The smallest string greater than every string starting with `prefix`, or `None` if there is
/// none (an empty prefix, or one made only of U+10FFFF). UTF-8 preserves code point order
/// bytewise and no encoding is a prefix of another, so for `prefix = q + c + (U+10FFFF)*` the
/// strings starting with `prefix` are exactly those in `[prefix, q + succ(c))`.
pub(crate) fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Whether a string may be written into SQL as a literal: letters only, so nothing needs quoting.
fn is_vocabulary(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Appends `expr <condition>` for values of `kind` in `expr`.
fn push_condition(sql: &mut Sql, expr: &str, kind: ValueKind, condition: &Condition) {
    if let Condition::Equal(IndexValue::Str(value)) = condition
        && matches!(expr, "m.interface" | "m.method")
        && is_vocabulary(value)
    {
        sql.push(&format!("{expr} = '{value}'"));
        return;
    }
    match condition {
        Condition::Equal(value) => match arg(kind, value) {
            Some(a) => {
                sql.push(expr);
                sql.push(" = ");
                sql.arg(a);
            }
            None => sql.push(FALSE),
        },
        Condition::OneOf(values) => {
            let args: Vec<Arg> = values.iter().filter_map(|v| arg(kind, v)).collect();
            if args.is_empty() {
                sql.push(FALSE);
                return;
            }
            sql.push(expr);
            sql.push(" IN (");
            for (i, a) in args.into_iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.arg(a);
            }
            sql.push(")");
        }
        Condition::Range(range) => push_range(sql, expr, kind, range),
        Condition::Prefix(prefix) => {
            if kind != ValueKind::Str {
                sql.push(FALSE);
                return;
            }
            sql.push(expr);
            sql.push(" >= ");
            sql.bind(SqlValue::Text(prefix.clone()));
            if let Some(upper) = prefix_upper(prefix) {
                sql.push(" AND ");
                sql.push(expr);
                sql.push(" < ");
                sql.bind(SqlValue::Text(upper));
            }
        }
    }
}

fn push_range(sql: &mut Sql, expr: &str, kind: ValueKind, range: &Range) {
    let bounds = [
        (">", &range.gt),
        (">=", &range.gte),
        ("<", &range.lt),
        ("<=", &range.lte),
    ];
    let mut parts = Vec::new();
    for (op, bound) in bounds {
        if let Some(value) = bound {
            match arg(kind, value) {
                Some(a) => parts.push((op, a)),
                // One bound of another kind can never be satisfied.
                None => {
                    sql.push(FALSE);
                    return;
                }
            }
        }
    }
    if parts.is_empty() {
        // No bound: any value of the property matches.
        sql.push(expr);
        sql.push(" IS NOT NULL");
        return;
    }
    for (i, (op, a)) in parts.into_iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.push(expr);
        sql.push(" ");
        sql.push(op);
        sql.push(" ");
        sql.arg(a);
    }
}

fn tag_column(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Str => "t.value_str",
        ValueKind::Num => "t.value_num",
        ValueKind::Bool => "t.value_bool",
    }
}

/// The condition on one `message_tags` row (one element of the tag's value).
fn push_tag_condition(sql: &mut Sql, condition: &Condition) {
    match condition {
        Condition::Equal(value) => match value.kind() {
            Some(kind) => push_condition(sql, tag_column(kind), kind, condition),
            None => sql.push(FALSE),
        },
        Condition::OneOf(values) => {
            let kinds = [ValueKind::Str, ValueKind::Num, ValueKind::Bool];
            let groups: Vec<(ValueKind, Vec<IndexValue>)> = kinds
                .into_iter()
                .map(|k| {
                    (
                        k,
                        values
                            .iter()
                            .filter(|v| v.kind() == Some(k))
                            .cloned()
                            .collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, vs)| !vs.is_empty())
                .collect();
            if groups.is_empty() {
                sql.push(FALSE);
                return;
            }
            sql.push("(");
            for (i, (kind, vs)) in groups.into_iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                push_condition(sql, tag_column(kind), kind, &Condition::OneOf(vs));
            }
            sql.push(")");
        }
        Condition::Range(range) => {
            let mut kinds = [&range.gt, &range.gte, &range.lt, &range.lte]
                .into_iter()
                .flatten()
                .map(IndexValue::kind);
            match kinds.next() {
                // No bound: any element matches, and only existing elements have rows.
                None => sql.push(TRUE),
                Some(Some(kind)) if kinds.all(|k| k == Some(kind)) => {
                    push_range(sql, tag_column(kind), kind, range)
                }
                _ => sql.push(FALSE),
            }
        }
        Condition::Prefix(_) => {
            push_condition(sql, tag_column(ValueKind::Str), ValueKind::Str, condition)
        }
    }
}

/// Appends `c1 AND c2 …` for `conditions` on the row alias `m` (`1 = 1` if there are none).
fn push_conditions<'a>(
    sql: &mut Sql,
    conditions: impl Iterator<Item = (&'a String, &'a Condition)>,
) -> Result<(), StoreError> {
    let mut any = false;
    for (key, condition) in conditions {
        if any {
            sql.push(" AND ");
        }
        any = true;
        match IndexKey::parse(key)? {
            IndexKey::Column(name, kind) => {
                let column = schema::column(name)
                    .ok_or_else(|| StoreError::UnsupportedIndex(name.to_owned()))?;
                push_condition(sql, &format!("m.{}", column.sql), kind, condition);
            }
            IndexKey::Tag(tag) => {
                sql.push(
                    "EXISTS (SELECT 1 FROM message_tags t WHERE t.tenant_id = m.tenant_id AND t.message_cid = m.message_cid AND t.tag = ",
                );
                sql.bind(SqlValue::Text(tag.to_owned()));
                sql.push(" AND ");
                push_tag_condition(sql, condition);
                sql.push(")");
            }
        }
    }
    if !any {
        sql.push(TRUE);
    }
    Ok(())
}

/// The conditions every filter has (same key, equal condition).
fn common_conditions(filters: &[Filter]) -> Vec<(&String, &Condition)> {
    let Some((first, others)) = filters.split_first() else {
        return Vec::new();
    };
    first
        .0
        .iter()
        .filter(|&(key, condition)| others.iter().all(|f| f.0.get(key) == Some(condition)))
        .collect()
}

/// Whether the query is narrowed to a few messages by an identifier with an index of its own
/// (a record, its children, a context subtree). Identifiers match few messages while
/// categories (protocol, schema, author…) may match all of them, which SQLite cannot tell
/// without statistics.
fn is_anchored(filters: &[Filter]) -> bool {
    common_conditions(filters).iter().any(|(key, condition)| {
        matches!(key.as_str(), "recordId" | "parentId" | "contextId")
            && match condition {
                Condition::Equal(IndexValue::Str(_)) => true,
                Condition::Prefix(prefix) => !prefix.is_empty(),
                _ => false,
            }
    })
}

/// Appends ` AND <filters>` for OR-ed filters; nothing for an empty list (which matches
/// everything).
///
/// Conditions that every filter has (same key, equal condition) are hoisted out of the OR:
/// `(A AND B1) OR (A AND B2)` becomes `A AND (B1 OR B2)`. SQLite does not do this itself and
/// drives indexes only from top-level terms, so without it a non-owner's RecordsQuery (one
/// filter per visibility rule, all sharing the protocol or schema condition) could not use the
/// protocol or schema index and would walk a sort index checking every row (measured: 190 ms
/// instead of 0.2 ms at 100k records).
pub(crate) fn push_filters(sql: &mut Sql, filters: &[Filter]) -> Result<(), StoreError> {
    if filters.is_empty() {
        return Ok(());
    }
    let is_common = |key: &String, condition: &Condition| {
        filters.iter().all(|f| f.0.get(key) == Some(condition))
    };
    let common = common_conditions(filters);
    if !common.is_empty() {
        sql.push(" AND ");
        push_conditions(sql, common.iter().copied())?;
    }
    let rests: Vec<Vec<(&String, &Condition)>> = filters
        .iter()
        .map(|f| f.0.iter().filter(|&(k, c)| !is_common(k, c)).collect())
        .collect();
    if rests.iter().any(Vec::is_empty) {
        // A filter with nothing beyond the common part makes the OR true; unknown keys in the
        // other filters are still refused, as they would be without hoisting.
        for (key, _) in rests.iter().flatten() {
            IndexKey::parse(key)?;
        }
        return Ok(());
    }
    sql.push(" AND (");
    for (i, rest) in rests.into_iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        push_conditions(sql, rest.into_iter())?;
        sql.push(")");
    }
    sql.push(")");
    Ok(())
}

/// The message query: rows `(message_cid, message, encoded_data, indexes, sort value)`.
/// Returns `None` when the cursor's value has another kind than the sort column, so nothing can
/// follow it (as in the memory store, where such values never compare).
pub(crate) fn message_query(
    tenant_id: i64,
    filters: &[Filter],
    sort: &Sort,
    cursor: Option<&Cursor>,
    limit: Option<usize>,
) -> Result<Option<(Sql, &'static schema::Column)>, StoreError> {
    let column = schema::column(&sort.property).ok_or_else(|| {
        StoreError::InvalidQuery(format!(
            "cannot sort by `{}`: not an index column",
            sort.property
        ))
    })?;
    let col = &column.sql;
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT m.message_cid, m.message, m.encoded_data, m.indexes, m.{col} FROM messages m WHERE m.tenant_id = "
    ));
    sql.bind(SqlValue::Integer(tenant_id));
    // Messages without the sort property are not returned; saying so also lets SQLite use the
    // partial sort indexes. When an identifier narrows the query, the unary `+` (SQLite's way
    // to keep a term from driving an index) rules the sort indexes out: walking every message
    // in sort order to find a record's two messages is the plan SQLite would otherwise prefer.
    let plus = if is_anchored(filters) { "+" } else { "" };
    sql.push(&format!(" AND {plus}m.{col} IS NOT NULL"));
    push_filters(&mut sql, filters)?;
    let (dir, op) = match sort.direction {
        Direction::Ascending => ("ASC", ">"),
        Direction::Descending => ("DESC", "<"),
    };
    if let Some(cursor) = cursor {
        let Some(value) = arg(column.kind, &cursor.value) else {
            return Ok(None);
        };
        sql.push(&format!(" AND (m.{col}, m.message_cid) {op} ("));
        sql.arg(value);
        sql.push(", ");
        sql.bind(SqlValue::Text(cursor.message_cid.clone()));
        sql.push(")");
    }
    sql.push(&format!(" ORDER BY m.{col} {dir}, m.message_cid {dir}"));
    if let Some(limit) = limit {
        sql.push(" LIMIT ");
        // limit + 1: the extra row only tells whether a next page exists.
        sql.bind(SqlValue::Integer(
            i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
        ));
    }
    Ok(Some((sql, column)))
}

/// The event query: rows `(watermark, message_cid)`. The event log is the messages that have a
/// watermark, in watermark order (see the `schema` module).
pub(crate) fn event_query(
    tenant_id: i64,
    filters: &[Filter],
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<Sql, StoreError> {
    let mut sql = Sql::default();
    // The watermark order drives the query whatever the filters, as a replica polls from its
    // cursor: without the hint SQLite could pick a filter's index and sort every match.
    sql.push(
        "SELECT m.watermark, m.message_cid FROM messages m INDEXED BY messages_watermark \
         WHERE m.tenant_id = ",
    );
    sql.bind(SqlValue::Integer(tenant_id));
    sql.push(" AND m.watermark IS NOT NULL");
    if let Some(after) = after {
        sql.push(" AND m.watermark > ");
        sql.bind(SqlValue::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
    }
    push_filters(&mut sql, filters)?;
    sql.push(" ORDER BY m.watermark");
    if let Some(limit) = limit {
        sql.push(" LIMIT ");
        sql.bind(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::prefix_upper;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper(""), None);
        assert_eq!(prefix_upper("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper("a\u{7F}").as_deref(), Some("a\u{80}"));
        assert_eq!(prefix_upper("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper("\u{10FFFF}\u{10FFFF}"), None);
        for s in ["ab", "ab\u{10FFFF}\u{10FFFF}", "abz", "ab\u{0}"] {
            assert!(s.as_bytes() < "ac".as_bytes());
        }
    }
}
