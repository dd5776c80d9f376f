//! A browser for the HTML pages: keeps its cookies, reads hidden form fields.

use crate::support::{RequestBuilder, Resp, TestApp};

pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `name=value` of each `Set-Cookie`.
pub fn set_cookies(resp: &Resp) -> Vec<String> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect()
}

/// The value of the hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html_escape::decode_html_entities(&html[start..end]).into_owned()
}

/// A browser: keeps its cookies.
#[derive(Default)]
pub struct Browser {
    pub cookies: Vec<String>,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            cookies: Vec::new(),
        }
    }

    pub async fn send(&mut self, app: &TestApp, mut request: RequestBuilder) -> Resp {
        if !self.cookies.is_empty() {
            request = request.header("cookie", &self.cookies.join("; "));
        }
        let resp = app.send(request.build()).await;
        for cookie in set_cookies(&resp) {
            let name = cookie.split('=').next().unwrap().to_string();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(cookie);
        }
        resp
    }

    pub async fn get(&mut self, app: &TestApp, path: &str) -> Resp {
        self.send(app, RequestBuilder::new("GET", path)).await
    }

    pub async fn post_form(&mut self, app: &TestApp, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let request = RequestBuilder::new("POST", path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        self.send(app, request).await
    }
}
