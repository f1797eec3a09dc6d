//! Configure-time analysis of the parsed modules: what regorus leaves to evaluation time, and
//! what the decision cache needs to know.
//!
//! regorus resolves function calls only when evaluation reaches them, so a policy calling a
//! builtin this build leaves out (`regex.match`, `time.now_ns`, ...) or a misspelt function would
//! configure fine and then deny matching requests with `policy_error`. Walking the parsed modules
//! once per configure turns that into a configuration error that names the module and line.
//!
//! The same walk records which members of `input` the policy can read (`input.subject`,
//! `input["tool"]`; any other use of `input` means all of it) and whether it calls a builtin
//! whose result is not a function of its arguments (`rand.intn`). A policy is then a pure
//! function of those members and `data`, which is what lets [`super::cache`] reuse decisions.

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

/// What one walk over the modules found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// Calls to functions that are neither builtins nor defined by the modules.
    pub unknown: Vec<UnknownCall>,
    /// Top-level members of `input` the policy reads by name.
    pub input_fields: BTreeSet<String>,
    /// `input` is used other than through a constant member name (`x := input`, `input[k]`,
    /// `with input as ...`, `import input`): any member may matter.
    pub whole_input: bool,
    /// A builtin whose result differs between evaluations with the same input is called.
    pub nondeterministic: bool,
}

/// Builtins whose results are not a function of their arguments (regorus's own list of calls it
/// must cache within one query).
const NONDETERMINISTIC: &[&str] = &["rand.intn", "time.now_ns", "uuid.rfc4122", "opa.runtime"];

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

/// Walks every rule of `modules` once. Iterative, so a deeply nested policy cannot exhaust the
/// stack.
pub(crate) fn analyse(modules: &[regorus::unstable::Ref<Module>]) -> Analysis {
    let defined = defined_functions(modules);
    let mut out = Analysis::default();
    let mut stack: Vec<Node<'_>> = Vec::new();
    for m in modules {
        for import in &m.imports {
            stack.push(Node::Expr(&import.refr));
        }
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
                            // A `with input...` target counts as a use of `input`: conservative.
                            stack.push(Node::Expr(&w.refr));
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

/// `input`'s member named by a constant (`input.tool`, `input["tool"]`), when `refr` is `input`.
fn input_member<'a>(refr: &Expr, index: &'a Expr) -> Option<&'a str> {
    if !is_input(refr) {
        return None;
    }
    match index {
        Expr::String {
            value: regorus::Value::String(s),
            ..
        }
        | Expr::RawString {
            value: regorus::Value::String(s),
            ..
        } => Some(s),
        _ => None,
    }
}

fn is_input(e: &Expr) -> bool {
    matches!(e, Expr::Var { span, .. } if span.text() == "input")
}

fn push_children<'a>(
    e: &'a Expr,
    stack: &mut Vec<Node<'a>>,
    defined: &BTreeSet<String>,
    out: &mut Analysis,
) {
    match e {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. } => {}
        // Reached only when not the base of a constant member reference (handled below).
        Expr::Var { .. } => {
            if is_input(e) {
                out.whole_input = true;
            }
        }
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
                if NONDETERMINISTIC.contains(&path.as_str()) {
                    out.nondeterministic = true;
                }
                if !known {
                    out.unknown.push(UnknownCall {
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
        Expr::RefDot { refr, field, .. } => {
            if is_input(refr) {
                out.input_fields.insert(field.0.text().to_owned());
            } else {
                stack.push(Node::Expr(refr));
            }
        }
        Expr::RefBrack { refr, index, .. } => {
            match input_member(refr, index) {
                Some(name) => {
                    out.input_fields.insert(name.to_owned());
                }
                None => stack.push(Node::Expr(refr)),
            }
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
