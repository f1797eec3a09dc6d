//! Configure-time checks regorus leaves to evaluation time.
//!
//! regorus resolves function calls only when evaluation reaches them, so a policy calling a
//! builtin this build leaves out (`regex.match`, `time.now_ns`, ...) or a misspelt function would
//! configure fine and then deny matching requests with `policy_error`. Walking the parsed modules
//! once per configure turns that into a configuration error that names the module and line.

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead, BUILTINS};

/// A call to a function that is neither a builtin of this build nor defined by the modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownCall {
    /// The module's name as given in the config.
    pub module: String,
    pub line: u32,
    pub col: u32,
    pub function: String,
}

enum Node<'a> {
    Expr(&'a Expr),
    Query(&'a Query),
}

/// The dotted name of a function expression (`startswith`, `data.lib.f`, `lib.f`); `None` for
/// shapes that cannot name a function.
fn path_of(e: &Expr) -> Option<String> {
    match e {
        Expr::Var { span, .. } => Some(span.text().to_owned()),
        Expr::RefDot { refr, field, .. } => {
            let mut p = path_of(refr)?;
            p.push('.');
            p.push_str(field.0.text());
            Some(p)
        }
        _ => None,
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Names of the functions the modules define (last path segment: calls may reach them through
/// their package, an import or an alias, and matching the last segment accepts all of those).
fn defined_functions(modules: &[regorus::unstable::Ref<Module>]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for m in modules {
        for rule in &m.policy {
            let refr = match rule.as_ref() {
                Rule::Spec {
                    head: RuleHead::Func { refr, .. },
                    ..
                } => refr,
                Rule::Default { refr, args, .. } if !args.is_empty() => refr,
                _ => continue,
            };
            if let Some(p) = path_of(refr) {
                names.insert(last_segment(&p).to_owned());
            }
        }
    }
    names
}

/// Every call in `modules` whose function is not known. Iterative, so a deeply nested policy
/// cannot exhaust the stack.
pub(crate) fn unknown_calls(modules: &[regorus::unstable::Ref<Module>]) -> Vec<UnknownCall> {
    let defined = defined_functions(modules);
    let mut out = Vec::new();
    let mut stack: Vec<Node<'_>> = Vec::new();
    for m in modules {
        for rule in &m.policy {
            match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    match head {
                        RuleHead::Compr { refr, assign, .. } => {
                            stack.push(Node::Expr(refr));
                            if let Some(a) = assign {
                                stack.push(Node::Expr(&a.value));
                            }
                        }
                        RuleHead::Set { refr, key, .. } => {
                            stack.push(Node::Expr(refr));
                            if let Some(k) = key {
                                stack.push(Node::Expr(k));
                            }
                        }
                        RuleHead::Func { args, assign, .. } => {
                            stack.extend(args.iter().map(|a| Node::Expr(a)));
                            if let Some(a) = assign {
                                stack.push(Node::Expr(&a.value));
                            }
                        }
                    }
                    for b in bodies {
                        if let Some(a) = &b.assign {
                            stack.push(Node::Expr(&a.value));
                        }
                        stack.push(Node::Query(&b.query));
                    }
                }
                Rule::Default { value, .. } => stack.push(Node::Expr(value)),
            }
        }
        while let Some(node) = stack.pop() {
            match node {
                Node::Query(q) => {
                    for s in &q.stmts {
                        for w in &s.with_mods {
                            stack.push(Node::Expr(&w.r#as));
                        }
                        match &s.literal {
                            Literal::SomeVars { .. } => {}
                            Literal::SomeIn {
                                key,
                                value,
                                collection,
                                ..
                            } => {
                                stack.extend(key.iter().map(|k| Node::Expr(k)));
                                stack.push(Node::Expr(value));
                                stack.push(Node::Expr(collection));
                            }
                            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                                stack.push(Node::Expr(expr));
                            }
                            Literal::Every { domain, query, .. } => {
                                stack.push(Node::Expr(domain));
                                stack.push(Node::Query(query));
                            }
                        }
                    }
                }
                Node::Expr(e) => push_children(e, &mut stack, &defined, &mut out),
            }
        }
    }
    out
}

fn push_children<'a>(
    e: &'a Expr,
    stack: &mut Vec<Node<'a>>,
    defined: &BTreeSet<String>,
    out: &mut Vec<UnknownCall>,
) {
    match e {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. }
        | Expr::Var { .. } => {}
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            stack.extend(items.iter().map(|i| Node::Expr(i)));
        }
        Expr::Object { fields, .. } => {
            for (_, k, v) in fields {
                stack.push(Node::Expr(k));
                stack.push(Node::Expr(v));
            }
        }
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            stack.push(Node::Expr(term));
            stack.push(Node::Query(query));
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            stack.push(Node::Expr(key));
            stack.push(Node::Expr(value));
            stack.push(Node::Query(query));
        }
        Expr::Call {
            span, fcn, params, ..
        } => {
            if let Some(path) = path_of(fcn) {
                let known = BUILTINS.contains_key(path.as_str())
                    || path == "print"
                    || defined.contains(last_segment(&path));
                if !known {
                    out.push(UnknownCall {
                        module: span.source.get_path().clone(),
                        line: span.line,
                        col: span.col,
                        function: path,
                    });
                }
            }
            stack.extend(params.iter().map(|p| Node::Expr(p)));
        }
        Expr::UnaryExpr { expr, .. } => stack.push(Node::Expr(expr)),
        Expr::RefDot { refr, .. } => stack.push(Node::Expr(refr)),
        Expr::RefBrack { refr, index, .. } => {
            stack.push(Node::Expr(refr));
            stack.push(Node::Expr(index));
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            stack.push(Node::Expr(lhs));
            stack.push(Node::Expr(rhs));
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => {
            stack.extend(key.iter().map(|k| Node::Expr(k)));
            stack.push(Node::Expr(value));
            stack.push(Node::Expr(collection));
        }
    }
}
