//! The skeleton and look shared by the HTML pages (the report's, the comparison's): one
//! self-contained document, inline CSS, no external assets.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The pages' common style sheet.
const CSS: &str = include_str!("report.css");

/// A page titled `title`: the common style sheet and `css` inline, then `body`.
pub(crate) fn page(title: &str, css: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) (PreEscaped(css)) }
            }
            body { (body) }
        }
    }
    .into_string()
}
