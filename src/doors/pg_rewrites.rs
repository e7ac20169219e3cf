//! What clients send while they introspect that datafusion-pg-catalog's
//! rewrites leave unplannable, rewritten into SQL the session plans.

use std::ops::ControlFlow;

use datafusion_pg_catalog::sql::rules::{RewriteRegCastToSubquery, SqlStatementRewriteRule};
use deltalake::datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr,
    Statement, TableFactor, Value, VisitMut, VisitorMut,
};

use crate::functions::postgres::LIKE_PATTERN;

#[derive(Debug, Default)]
pub struct PgRewrites {
    casts: RewriteRegCastToSubquery,
}

impl PgRewrites {
    /// `statement` after datafusion-pg-catalog's rules, rewritten further.
    pub fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = statement.visit(&mut CatalogLookupsInCase);
        like_escapes_as_backslashes(&mut statement);
        if !to_regtype_as_cast(&mut statement) {
            return statement;
        }
        self.casts.rewrite(statement)
    }
}

/// `to_regtype(name)`: a type's oid, or NULL when no type has that name.
/// psycopg asks it before adapting a type, so SQLAlchemy asks it on every
/// connection (for `hstore`). Written as `name::regtype`, which
/// datafusion-pg-catalog turns into a `pg_type` lookup: a scalar subquery,
/// NULL when it finds nothing, as `to_regtype` is. True if one was found.
fn to_regtype_as_cast(statement: &mut Statement) -> bool {
    let mut found = false;
    let _ = visit_expressions_mut(statement, |e| {
        if let Some(name) = to_regtype_argument(e) {
            *e = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(name),
                data_type: DataType::Custom(ObjectName::from(vec![Ident::new("regtype")]), vec![]),
                array: false,
                format: None,
            };
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `x LIKE p ESCAPE 'c'`, which SQLAlchemy writes with `/` to list
/// schemas, as `x LIKE pg_like_pattern(p, 'c')`: DataFusion's LIKE escapes
/// with a backslash only.
fn like_escapes_as_backslashes(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = e
        {
            if let Some(escape) =
                escape_char.take_if(|c| c.value != Value::SingleQuotedString("\\".into()))
            {
                let argument = |e: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
                let original = std::mem::replace(pattern.as_mut(), Expr::Value(Value::Null.into()));
                **pattern = Expr::Function(Function {
                    name: ObjectName::from(vec![Ident::new(LIKE_PATTERN)]),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    args: FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: None,
                        args: vec![argument(original), argument(Expr::Value(escape))],
                        clauses: vec![],
                    }),
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: vec![],
                });
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The one argument of a call to `to_regtype` (or `pg_catalog.to_regtype`).
fn to_regtype_argument(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.0.last()?.as_ident()?;
    if !name.value.eq_ignore_ascii_case("to_regtype") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg.clone()),
        _ => None,
    }
}

/// A `pg_catalog` lookup in a CASE of a SELECT list becomes NULL.
/// SQLAlchemy's inspector reads a column's default, identity and collation
/// that way, each guarded by a CASE that is false for every column here
/// (docstream's tables have no defaults, sequences or collations), and
/// DataFusion cannot plan a scalar subquery inside a CASE. This extends
/// datafusion-pg-catalog's own rule, which does the same for correlated
/// subqueries that are a whole SELECT item.
struct CatalogLookupsInCase;

impl VisitorMut for CatalogLookupsInCase {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
            else {
                continue;
            };
            let _ = visit_expressions_mut(e, |e| {
                if matches!(e, Expr::Case { .. }) {
                    let _ = visit_expressions_mut(e, |inner| {
                        if matches!(inner, Expr::Subquery(q) if reads_only_pg_catalog(q)) {
                            *inner = Expr::Value(Value::Null.into());
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

/// Whether every table `query` reads directly is one of `pg_catalog`'s.
fn reads_only_pg_catalog(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let catalog = |factor: &TableFactor| match factor {
        TableFactor::Table { name, .. } => {
            let parts: Vec<_> = name.0.iter().filter_map(|p| p.as_ident()).collect();
            match parts.as_slice() {
                [schema, _] => schema.value.eq_ignore_ascii_case("pg_catalog"),
                [table] => table.value.starts_with("pg_"),
                _ => false,
            }
        }
        _ => false,
    };
    !select.from.is_empty()
        && select
            .from
            .iter()
            .all(|t| catalog(&t.relation) && t.joins.iter().all(|j| catalog(&j.relation)))
}

#[cfg(test)]
mod tests {
    use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = PostgresCompatibilityParser::new().parse(sql).unwrap();
        PgRewrites::default()
            .rewrite(statements.remove(0))
            .to_string()
    }

    #[test]
    fn to_regtype_becomes_a_pg_type_lookup() {
        let sql = rewritten("SELECT typname FROM pg_type t WHERE t.oid = to_regtype($1)");
        assert!(
            sql.contains("FROM pg_catalog.pg_type WHERE typname = $1"),
            "{sql}"
        );
        assert!(!sql.to_lowercase().contains("to_regtype"), "{sql}");
        let untouched = "SELECT regtype_name(1)";
        assert_eq!(rewritten(untouched), untouched);
    }

    #[test]
    fn only_catalog_lookups_in_a_case_become_null() {
        let sql = rewritten(
            "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d \
             WHERE d.adrelid = a.attrelid) ELSE NULL END AS dflt, \
             CASE WHEN true THEN (SELECT max(n) FROM chunks) END AS mine \
             FROM pg_catalog.pg_attribute a",
        );
        assert!(!sql.contains("pg_attrdef"), "{sql}");
        assert!(sql.contains("THEN NULL"), "{sql}");
        assert!(sql.contains("(SELECT max(n) FROM chunks"), "{sql}");
    }

    #[test]
    fn like_escapes_other_than_backslash_become_a_pattern_function() {
        let sql = rewritten("SELECT 1 WHERE 'a' NOT LIKE $1 || '%' ESCAPE '/'");
        assert!(
            sql.contains("NOT LIKE pg_like_pattern($1 || '%', '/')"),
            "{sql}"
        );
        let kept = "SELECT 1 WHERE 'a' LIKE 'b' ESCAPE '\\'";
        assert_eq!(rewritten(kept), kept);
    }
}
