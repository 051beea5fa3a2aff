//! [`Problems`]: what a reader collects instead of stopping at the first bad value.
//!
//! The config loader, the rule-file reader and the admin API's rule reader all check every key
//! or field, keep going past each problem, and hand back either the value they built or every
//! problem at once, so `latch check` and the admin UI can show all of them together. This is
//! their one accumulator. It knows nothing of what a problem looks like: each reader brings its
//! own problem type and, through [`Problems::context`], how a field name and a message become
//! one.

/// Every problem found so far, in the order found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems<P> {
    found: Vec<P>,
}

impl<P> Default for Problems<P> {
    fn default() -> Self {
        Problems { found: Vec::new() }
    }
}

impl<P> Problems<P> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, problem: P) {
        self.found.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, P> {
        self.found.iter()
    }

    /// A view that turns `(field, message)` into a problem with `make`, for a stretch of
    /// reading where every problem shares its whereabouts (one rule, one config source).
    pub fn context<F>(&mut self, make: F) -> ProblemContext<'_, P, F>
    where
        F: Fn(&str, String) -> P,
    {
        ProblemContext {
            problems: self,
            make,
        }
    }

    /// `value` if nothing was found, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<P>> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.found)
        }
    }

    pub fn into_vec(self) -> Vec<P> {
        self.found
    }
}

impl<P> Extend<P> for Problems<P> {
    fn extend<I: IntoIterator<Item = P>>(&mut self, iter: I) {
        self.found.extend(iter);
    }
}

impl<P> FromIterator<P> for Problems<P> {
    fn from_iter<I: IntoIterator<Item = P>>(iter: I) -> Self {
        Problems {
            found: iter.into_iter().collect(),
        }
    }
}

/// [`Problems`] seen through one context; see [`Problems::context`].
pub struct ProblemContext<'a, P, F> {
    problems: &'a mut Problems<P>,
    make: F,
}

impl<P, F> ProblemContext<'_, P, F>
where
    F: Fn(&str, String) -> P,
{
    /// Records that `field` is wrong, and why.
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        let problem = (self.make)(field, message.into());
        self.problems.push(problem);
    }

    /// Records every name in `names` that is not in `known` as unknown, with `message` saying
    /// so (it is given the known names, joined with `, `).
    pub fn unknown<'n>(
        &mut self,
        names: impl IntoIterator<Item = &'n str>,
        known: &[&str],
        message: impl Fn(&str) -> String,
    ) {
        let listed = known.join(", ");
        for name in names {
            if !known.contains(&name) {
                self.push(name, message(&listed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_hands_back_the_value_only_when_nothing_was_found() {
        assert_eq!(Problems::<String>::new().finish(7), Ok(7));
        let mut problems = Problems::new();
        problems.push("a".to_string());
        problems.extend(["b".to_string()]);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems.finish(7), Err(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn a_context_builds_every_problem_it_is_given() {
        let mut problems = Problems::new();
        let mut rule = problems.context(|field, message| format!("rule r: {field}: {message}"));
        rule.push("id", "is required");
        rule.unknown(
            ["id", "colour", "pattern", "size"],
            &["id", "pattern"],
            |known| format!("unknown; known: {known}"),
        );
        assert_eq!(
            problems.into_vec(),
            vec![
                "rule r: id: is required",
                "rule r: colour: unknown; known: id, pattern",
                "rule r: size: unknown; known: id, pattern",
            ]
        );
    }
}
