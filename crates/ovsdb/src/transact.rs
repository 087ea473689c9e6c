//! Transactions (RFC 7047 section 5.2): operations, a builder that hands out named-uuids for
//! cross references, and typed per-operation results and errors.

use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::value::{NamedUuid, Row, Value};

/// Comparison function of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `includes`
    Includes,
    /// `excludes`
    Excludes,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Gt => ">",
            Function::Ge => ">=",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// A `where` clause element: `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Column compared.
    pub column: String,
    /// Comparison.
    pub function: Function,
    /// Value compared against.
    pub value: Value,
}

impl Condition {
    /// `column == value`
    pub fn eq(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(column, Function::Eq, value)
    }
    /// `column != value`
    pub fn ne(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(column, Function::Ne, value)
    }
    /// `column includes value`
    pub fn includes(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(column, Function::Includes, value)
    }
    /// `_uuid == uuid`
    pub fn uuid(uuid: Uuid) -> Self {
        Self::eq("_uuid", uuid)
    }
    /// Any condition.
    pub fn new(column: impl Into<String>, function: Function, value: impl Into<Value>) -> Self {
        Condition {
            column: column.into(),
            function,
            value: value.into(),
        }
    }
    pub(crate) fn to_json(&self) -> Json {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

/// Mutator of a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `insert` (sets and maps)
    Insert,
    /// `delete` (sets and maps; for maps, by keys or by pairs)
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// A mutation: `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Column mutated.
    pub column: String,
    /// How.
    pub mutator: Mutator,
    /// Operand.
    pub value: Value,
}

impl Mutation {
    /// Inserts elements (or map pairs) into a set/map column.
    pub fn insert(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(column, Mutator::Insert, value)
    }
    /// Deletes elements (or map keys/pairs) from a set/map column.
    pub fn delete(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(column, Mutator::Delete, value)
    }
    /// Any mutation.
    pub fn new(column: impl Into<String>, mutator: Mutator, value: impl Into<Value>) -> Self {
        Mutation {
            column: column.into(),
            mutator,
            value: value.into(),
        }
    }
    fn to_json(&self) -> Json {
        json!([self.column, self.mutator.as_str(), self.value.to_json()])
    }
}

/// `until` of a wait operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    /// Wait until the selected rows equal the given rows.
    Equal,
    /// Wait until they differ.
    NotEqual,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Inserts a row; `uuid_name` lets later operations refer to it as a named-uuid.
    Insert {
        /// Table.
        table: String,
        /// Initial column values.
        row: Row,
        /// Symbolic name for cross references.
        uuid_name: Option<String>,
    },
    /// Reads matching rows.
    Select {
        /// Table.
        table: String,
        /// Conditions (all must hold).
        conditions: Vec<Condition>,
        /// Columns to return (all if `None`).
        columns: Option<Vec<String>>,
    },
    /// Sets columns of matching rows.
    Update {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// New column values.
        row: Row,
    },
    /// Mutates columns of matching rows.
    Mutate {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Mutations.
        mutations: Vec<Mutation>,
    },
    /// Deletes matching rows.
    Delete {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
    },
    /// Waits until matching rows (projected on `columns`) are (not) equal to `rows`.
    Wait {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Columns compared.
        columns: Vec<String>,
        /// Equal or not-equal.
        until: WaitUntil,
        /// Expected rows.
        rows: Vec<Row>,
        /// Milliseconds to wait (0 = fail at once); `None` = forever.
        timeout_ms: Option<u64>,
    },
    /// Requests a (durable) commit.
    Commit {
        /// Wait for the commit to be on disk.
        durable: bool,
    },
    /// Aborts the transaction.
    Abort,
    /// Adds a comment to the database log.
    Comment(String),
    /// Fails the transaction unless this client owns the lock.
    Assert {
        /// Lock name.
        lock: String,
    },
}

impl Operation {
    /// RFC 7047 JSON encoding.
    pub fn to_json(&self) -> Json {
        let conds = |c: &[Condition]| Json::Array(c.iter().map(Condition::to_json).collect());
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row.to_json()});
                if let Some(n) = uuid_name {
                    o["uuid-name"] = json!(n);
                }
                o
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                let mut o = json!({"op": "select", "table": table, "where": conds(conditions)});
                if let Some(c) = columns {
                    o["columns"] = json!(c);
                }
                o
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                json!({"op": "update", "table": table, "where": conds(conditions), "row": row.to_json()})
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": conds(conditions),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>(),
            }),
            Operation::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conds(conditions)})
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                let mut o = json!({
                    "op": "wait", "table": table, "where": conds(conditions), "columns": columns,
                    "until": if *until == WaitUntil::Equal { "==" } else { "!=" },
                    "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
                });
                if let Some(t) = timeout_ms {
                    o["timeout"] = json!(t);
                }
                o
            }
            Operation::Commit { durable } => json!({"op": "commit", "durable": durable}),
            Operation::Abort => json!({"op": "abort"}),
            Operation::Comment(c) => json!({"op": "comment", "comment": c}),
            Operation::Assert { lock } => json!({"op": "assert", "lock": lock}),
        }
    }
}

/// Result of one successful operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationResult {
    /// `insert`: the new row's uuid.
    Inserted(Uuid),
    /// `select`: the rows.
    Rows(Vec<Row>),
    /// `update`, `mutate`, `delete`: number of rows matched.
    Count(u64),
    /// Operations without output (`wait`, `commit`, `comment`, `assert`).
    Empty,
}

impl OperationResult {
    fn from_json(j: &Json) -> Result<Self> {
        let o = j
            .as_object()
            .ok_or_else(|| Error::protocol(format!("operation result is not an object: {j}")))?;
        if let Some(u) = o.get("uuid") {
            return match crate::value::Atom::from_json(u)? {
                crate::value::Atom::Uuid(u) => Ok(OperationResult::Inserted(u)),
                _ => Err(Error::protocol(format!("insert result uuid: {u}"))),
            };
        }
        if let Some(rows) = o.get("rows") {
            let rows = rows
                .as_array()
                .ok_or_else(|| Error::protocol("select rows is not an array"))?;
            return rows
                .iter()
                .map(Row::from_json)
                .collect::<Result<_>>()
                .map(OperationResult::Rows);
        }
        if let Some(c) = o.get("count") {
            return c
                .as_u64()
                .map(OperationResult::Count)
                .ok_or_else(|| Error::protocol(format!("bad count {c}")));
        }
        Ok(OperationResult::Empty)
    }

    /// The inserted uuid, if this is an insert result.
    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            OperationResult::Inserted(u) => Some(*u),
            _ => None,
        }
    }

    /// The selected rows, if this is a select result.
    pub fn rows(&self) -> Option<&[Row]> {
        match self {
            OperationResult::Rows(r) => Some(r),
            _ => None,
        }
    }

    /// The matched-row count, if this is an update/mutate/delete result.
    pub fn count(&self) -> Option<u64> {
        match self {
            OperationResult::Count(c) => Some(*c),
            _ => None,
        }
    }
}

/// Parses a `transact` reply: the per-operation results, or [`Error::Txn`] for the first failure
/// (index `ops` for errors found at commit time, like constraint violations).
pub fn parse_transact_reply(ops: usize, reply: &Json) -> Result<Vec<OperationResult>> {
    let arr = reply
        .as_array()
        .ok_or_else(|| Error::protocol(format!("transact reply is not an array: {reply}")))?;
    for (index, r) in arr.iter().enumerate() {
        if let Some(error) = r.get("error").filter(|e| !e.is_null()) {
            return Err(Error::Txn {
                index,
                error: error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned),
                details: r.get("details").and_then(Json::as_str).map(str::to_owned),
            });
        }
    }
    if arr.len() < ops {
        return Err(Error::protocol(format!(
            "transact reply has {} results for {ops} operations",
            arr.len()
        )));
    }
    arr.iter()
        .take(ops)
        .map(OperationResult::from_json)
        .collect()
}

/// Results of a committed transaction built with [`TxnBuilder`].
#[derive(Debug, Clone, PartialEq)]
pub struct TxnResult {
    /// One result per operation, in order.
    pub results: Vec<OperationResult>,
    names: Vec<(String, usize)>,
}

impl TxnResult {
    /// The real uuid of a row inserted with this named-uuid.
    pub fn uuid_of(&self, name: &NamedUuid) -> Option<Uuid> {
        let (_, i) = self.names.iter().find(|(n, _)| *n == name.0)?;
        self.results.get(*i)?.uuid()
    }
}

/// Builds a transaction for one database, handing out named-uuids for inserted rows.
///
/// ```
/// use ovsdb::{TxnBuilder, Row, Mutation, Condition, Value};
/// let mut tx = TxnBuilder::new("OVN_Northbound");
/// let lsp = tx.insert("Logical_Switch_Port", Row::new().with("name", "p1"));
/// tx.mutate("Logical_Switch", vec![Condition::eq("name", "sw0")],
///           vec![Mutation::insert("ports", Value::set([lsp.clone()]))]);
/// assert_eq!(tx.operations().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct TxnBuilder {
    db: String,
    ops: Vec<Operation>,
    names: Vec<(String, usize)>,
}

impl TxnBuilder {
    /// An empty transaction on `db`.
    pub fn new(db: impl Into<String>) -> Self {
        TxnBuilder {
            db: db.into(),
            ops: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Database name.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// The operations so far.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// True if there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends any operation.
    pub fn push(&mut self, op: Operation) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Inserts a row and returns its named-uuid (unique in this transaction) for cross references.
    pub fn insert(&mut self, table: impl Into<String>, row: Row) -> NamedUuid {
        let name = format!("row{}", self.ops.len());
        self.insert_named(table, row, name)
    }

    /// Inserts a row with a caller-chosen uuid-name.
    pub fn insert_named(
        &mut self,
        table: impl Into<String>,
        row: Row,
        uuid_name: impl Into<String>,
    ) -> NamedUuid {
        let name = uuid_name.into();
        self.names.push((name.clone(), self.ops.len()));
        self.ops.push(Operation::Insert {
            table: table.into(),
            row,
            uuid_name: Some(name.clone()),
        });
        NamedUuid(name)
    }

    /// Appends a select; its rows are `results[index]`. Returns the operation index.
    pub fn select(
        &mut self,
        table: impl Into<String>,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    ) -> usize {
        self.ops.push(Operation::Select {
            table: table.into(),
            conditions,
            columns,
        });
        self.ops.len() - 1
    }

    /// Appends an update.
    pub fn update(
        &mut self,
        table: impl Into<String>,
        conditions: Vec<Condition>,
        row: Row,
    ) -> &mut Self {
        self.push(Operation::Update {
            table: table.into(),
            conditions,
            row,
        })
    }

    /// Appends a mutate.
    pub fn mutate(
        &mut self,
        table: impl Into<String>,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    ) -> &mut Self {
        self.push(Operation::Mutate {
            table: table.into(),
            conditions,
            mutations,
        })
    }

    /// Appends a delete.
    pub fn delete(&mut self, table: impl Into<String>, conditions: Vec<Condition>) -> &mut Self {
        self.push(Operation::Delete {
            table: table.into(),
            conditions,
        })
    }

    /// Appends a comment.
    pub fn comment(&mut self, comment: impl Into<String>) -> &mut Self {
        self.push(Operation::Comment(comment.into()))
    }

    /// Appends an assert on a lock this client must own.
    pub fn assert_lock(&mut self, lock: impl Into<String>) -> &mut Self {
        self.push(Operation::Assert { lock: lock.into() })
    }

    /// The `transact` params: `[db, op...]`.
    pub fn params(&self) -> Json {
        transact_params(&self.db, &self.ops)
    }

    /// Interprets the server's reply to [`TxnBuilder::params`].
    pub fn parse_reply(&self, reply: &Json) -> Result<TxnResult> {
        Ok(TxnResult {
            results: parse_transact_reply(self.ops.len(), reply)?,
            names: self.names.clone(),
        })
    }
}

/// The `params` for a raw operation list.
pub fn transact_params(db: &str, ops: &[Operation]) -> Json {
    let mut v = Vec::with_capacity(ops.len() + 1);
    v.push(json!(db));
    v.extend(ops.iter().map(Operation::to_json));
    Json::Array(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_encodes_named_uuid_cross_references() {
        let mut tx = TxnBuilder::new("DB");
        let ls = tx.insert("LS", Row::new().with("name", "a"));
        tx.mutate(
            "LR",
            vec![Condition::eq("name", "r")],
            vec![Mutation::insert("ports", Value::set([ls.clone()]))],
        );
        let p = tx.params();
        assert_eq!(p[0], json!("DB"));
        assert_eq!(p[1]["uuid-name"], json!(ls.0));
        assert_eq!(
            p[2]["mutations"],
            json!([["ports", "insert", ["set", [["named-uuid", ls.0]]]]])
        );
        let u = Uuid::new_v4();
        let res = tx
            .parse_reply(&json!([{"uuid": ["uuid", u.to_string()]}, {"count": 1}]))
            .unwrap();
        assert_eq!(res.uuid_of(&ls), Some(u));
        assert_eq!(res.results[1].count(), Some(1));
    }

    #[test]
    fn errors_name_the_failing_operation() {
        let e = parse_transact_reply(
            2,
            &json!([{"count": 1}, {"error": "constraint violation", "details": "dup"}]),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Txn { index: 1, ref error, .. } if error == "constraint violation")
        );
        let e = parse_transact_reply(
            1,
            &json!([{}, {"error": "referential integrity violation"}]),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Txn { index: 1, .. }));
        assert!(parse_transact_reply(2, &json!([{}])).is_err());
        assert!(parse_transact_reply(1, &json!({"a": 1})).is_err());
    }
}
