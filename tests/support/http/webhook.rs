//! A webhook receiver: answers every POST 204 and keeps its body, in order of arrival.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Answer, Handler, Request, Response, Server};

pub struct Webhook {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    posts: Arc<Posts>,
    _server: Server,
}

#[derive(Default)]
struct Posts(Mutex<Vec<String>>);

impl Handler for Posts {
    async fn answer(&self, req: Request) -> Answer {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        self.0.lock().unwrap().push(body);
        let mut done = Response::new(204);
        done.close = true;
        done.into()
    }
}

impl Webhook {
    pub fn start() -> Webhook {
        let (server, posts) = Server::start("webhook", |_| Arc::new(Posts::default()));
        Webhook {
            url: format!("{}/hook", server.base_url()),
            posts,
            _server: server,
        }
    }

    /// The bodies posted so far, as JSON.
    pub fn messages(&self) -> Vec<Value> {
        let posts = self.posts.0.lock().unwrap();
        posts
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.posts.0.lock().unwrap().len()
    }

    /// The `slotfill.status` of every message, in order.
    pub fn statuses(&self) -> Vec<String> {
        let messages = self.messages().into_iter();
        let status = |m: Value| m["slotfill"]["status"].as_str().unwrap_or("").to_string();
        messages.map(status).collect()
    }
}
