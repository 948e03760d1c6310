//! Templates: the shipped ones for well-known senders (GitHub, GitLab, Alertmanager, Grafana)
//! and the ones a config gives for its own hooks and outbound payloads.
//!
//! Inbound templates turn a JSON body into Markdown, which becomes the message's rich text.
//! Lookups of missing fields yield nothing rather than failing (payloads vary between versions
//! of the senders); what a shipped template cannot do without is checked before rendering, so a
//! body that is not what the hook expects gets a 400 naming the missing field.

use minijinja::{Environment, UndefinedBehavior, Value};

/// The names of the shipped templates.
pub const SHIPPED: &[&str] = &[
    "github/push",
    "github/issues",
    "github/pull_request",
    "github/release",
    "github/workflow_run",
    "gitlab/push",
    "alertmanager",
    "grafana",
];

const SOURCES: &[(&str, &str)] = &[
    (
        "github/push",
        include_str!("../templates/github-push.md.j2"),
    ),
    (
        "github/issues",
        include_str!("../templates/github-issues.md.j2"),
    ),
    (
        "github/pull_request",
        include_str!("../templates/github-pull_request.md.j2"),
    ),
    (
        "github/release",
        include_str!("../templates/github-release.md.j2"),
    ),
    (
        "github/workflow_run",
        include_str!("../templates/github-workflow_run.md.j2"),
    ),
    (
        "gitlab/push",
        include_str!("../templates/gitlab-push.md.j2"),
    ),
    (
        "alertmanager",
        include_str!("../templates/alertmanager.md.j2"),
    ),
    ("grafana", include_str!("../templates/grafana.md.j2")),
];

/// Fields each shipped template cannot do without, as paths into the body.
pub fn required(template: &str) -> &'static [&'static str] {
    match template {
        "github/push" => &["ref", "repository.full_name"],
        "github/issues" => &[
            "action",
            "issue.number",
            "issue.title",
            "repository.full_name",
        ],
        "github/pull_request" => &[
            "action",
            "pull_request.number",
            "pull_request.title",
            "repository.full_name",
        ],
        "github/release" => &["action", "release.tag_name", "repository.full_name"],
        "github/workflow_run" => &["action", "workflow_run.name", "repository.full_name"],
        "gitlab/push" => &["ref", "user_name", "project.path_with_namespace"],
        "alertmanager" => &["status", "alerts"],
        "grafana" => &["title"],
        _ => &[],
    }
}

/// The first of `paths` that `body` lacks (or has as null), if any.
pub fn missing<'a>(body: &serde_json::Value, paths: &[&'a str]) -> Option<&'a str> {
    paths.iter().copied().find(|path| {
        let mut at = body;
        for key in path.split('.') {
            match at.get(key) {
                Some(next) => at = next,
                None => return true,
            }
        }
        at.is_null()
    })
}

/// Every template the connector renders, compiled once at build time.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An environment holding the shipped templates.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("first_line", first_line);
        env.add_filter("truncate", truncate);
        for (name, source) in SOURCES {
            // The shipped templates are tested to compile; a failure here is a build defect
            // that the unit tests catch, so it is logged rather than panicking at runtime.
            if let Err(err) = env.add_template(name, source) {
                tracing::error!("shipped template {name} does not compile: {err}");
            }
        }
        Templates { env }
    }

    /// Compile a template from the config under `name`.
    pub fn add(&mut self, name: &str, source: String) -> Result<(), String> {
        self.env
            .add_template_owned(name.to_owned(), source)
            .map_err(|err| format!("the template does not compile: {err:#}"))
    }

    /// Render template `name` with `context`.
    pub fn render(&self, name: &str, context: Value) -> Result<String, String> {
        let template = self
            .env
            .get_template(name)
            .map_err(|err| format!("no template {name}: {err}"))?;
        template
            .render(context)
            .map_err(|err| format!("the template failed: {err:#}"))
    }
}

/// `{{ text | first_line }}`: the first line of a commit message or description.
fn first_line(value: String) -> String {
    value
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// `{{ text | truncate(n) }}`: at most `n` characters, with an ellipsis when cut.
fn truncate(value: String, length: Option<usize>) -> String {
    let length = length.unwrap_or(255);
    if value.chars().count() <= length {
        value
    } else {
        let mut cut: String = value.chars().take(length.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(name: &str, body: serde_json::Value) -> String {
        Templates::new()
            .render(name, Value::from(minijinja::value::Serde(&body)))
            .expect("renders")
    }

    #[test]
    fn every_shipped_template_compiles() {
        let templates = Templates::new();
        for name in SHIPPED {
            assert!(templates.env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn github_push_lists_commits_with_short_ids_and_first_lines() {
        let body = serde_json::json!({
            "ref": "refs/heads/main",
            "compare": "https://github.com/o/r/compare/a...b",
            "pusher": {"name": "alice"},
            "repository": {"full_name": "o/r", "html_url": "https://github.com/o/r"},
            "commits": [
                {"id": "0123456789abcdef", "url": "https://github.com/o/r/commit/0123456", "message": "Fix the thing\n\nLong story", "author": {"name": "Alice"}},
                {"id": "fedcba9876543210", "url": "https://github.com/o/r/commit/fedcba9", "message": "Add tests", "author": {"name": "Bob"}}
            ]
        });
        assert_eq!(
            render("github/push", body),
            "**alice** pushed 2 commits to `main` in [o/r](https://github.com/o/r/compare/a...b)\n\
             - [`0123456`](https://github.com/o/r/commit/0123456) Fix the thing (Alice)\n\
             - [`fedcba9`](https://github.com/o/r/commit/fedcba9) Add tests (Bob)"
        );
    }

    #[test]
    fn github_pull_request_closed_and_merged_says_merged() {
        let body = serde_json::json!({
            "action": "closed",
            "sender": {"login": "bob"},
            "pull_request": {"number": 7, "title": "Speed up", "html_url": "https://x/7", "merged": true},
            "repository": {"full_name": "o/r"}
        });
        assert_eq!(
            render("github/pull_request", body),
            "**bob** merged pull request [#7 Speed up](https://x/7) in o/r"
        );
    }

    #[test]
    fn github_workflow_runs_are_news_when_completed() {
        let run = |action: &str| {
            serde_json::json!({
                "action": action,
                "repository": {"full_name": "o/r"},
                "workflow_run": {"name": "CI", "run_number": 41, "conclusion": "timed_out",
                    "head_branch": "main", "display_title": "Fix it", "html_url": "https://x/41"}
            })
        };
        assert_eq!(
            render("github/workflow_run", run("completed")),
            "**CI** #41 timed out on `main` in o/r: [Fix it](https://x/41)"
        );
        assert_eq!(render("github/workflow_run", run("in_progress")), "");
    }

    #[test]
    fn alertmanager_counts_firing_alerts() {
        let body = serde_json::json!({
            "status": "firing",
            "groupLabels": {"alertname": "DiskFull"},
            "alerts": [
                {"status": "firing", "labels": {"alertname": "DiskFull", "severity": "critical"}, "annotations": {"summary": "/ is 99% full"}},
                {"status": "resolved", "labels": {"alertname": "DiskFull"}, "annotations": {"summary": "/var is fine"}}
            ]
        });
        assert_eq!(
            render("alertmanager", body),
            "**[FIRING:1] DiskFull**\n- firing: / is 99% full (critical)\n- resolved: /var is fine"
        );
    }

    #[test]
    fn missing_names_the_first_absent_field() {
        let body = serde_json::json!({"ref": "x", "repository": {"name": "r"}});
        assert_eq!(
            missing(&body, required("github/push")),
            Some("repository.full_name")
        );
        assert_eq!(missing(&body, &["ref"]), None);
    }

    #[test]
    fn truncate_cuts_on_characters() {
        assert_eq!(truncate("héllo wörld".into(), Some(5)), "héll…");
        assert_eq!(truncate("short".into(), Some(5)), "short");
    }
}
