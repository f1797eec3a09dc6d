//! Tiny glob matcher for tool allow/deny lists: `*` (any run) and `?` (one character).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty glob matches nothing; use \"*\" for everything".into());
        }
        Ok(Glob(pattern.chars().collect()))
    }

    /// Iterative matching with one backtrack point: linear in practice, no recursion.
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.0;
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p.get(pi..)
            .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::parse(p).is_ok_and(|g| g.matches(t))
    }

    #[test]
    fn stars_and_question_marks_match_as_in_shells() {
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("get-*", "get-env"));
        assert!(!m("get-*", "echo"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*-*-op*", "trigger-long-running-operation"));
        assert!(m("echo", "echo"));
        assert!(!m("echo", "echo2"));
        assert!(m("é*", "école"));
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(p in "[a*?]{1,8}", t in "[ab]{0,12}") {
            let _ = m(&p, &t);
        }
    }
}
