//! An in-memory Kubernetes API for the operator's reconcile tests: a
//! `tower` service behind a real `kube::Client` (kube's mocked-service
//! pattern), keeping objects as JSON. It models what the operator relies
//! on — get, list by label, create, server-side apply (one field manager:
//! the applied object replaces the previous one, server-set metadata and
//! the other half of spec/status kept), merge and JSON patches, the status
//! subresource, `generation` bumped on spec changes, deletion held by
//! finalizers — and it can fail chosen requests with a 500 to exercise
//! error handling. No API server runs here; this is the only mock in the
//! suite.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use ::http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

/// (collection path without namespace, e.g. `apis/apps/v1/statefulsets`;
/// namespace; name)
type Key = (String, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    next_version: u64,
    /// Every request, as "METHOD path".
    requests: Vec<String>,
    /// (method, path fragment, remaining count): requests to fail with 500.
    failures: Vec<(Method, String, usize)>,
    /// Every change, for watches.
    log: Vec<WatchEvent>,
    /// Server-side apply's field ownership: JSON pointer of a leaf → manager.
    owners: BTreeMap<Key, BTreeMap<String, String>>,
}

#[derive(Clone)]
struct WatchEvent {
    version: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

impl State {
    /// Logs a change for watchers, at a new resourceVersion.
    fn record(&mut self, key: &Key, kind: &'static str, object: &Value) {
        self.next_version += 1;
        let mut object = object.clone();
        object["metadata"]["resourceVersion"] = json!(self.next_version.to_string());
        if kind != "DELETED" {
            if let Some(stored) = self.objects.get_mut(key) {
                stored["metadata"]["resourceVersion"] = json!(self.next_version.to_string());
            }
        }
        self.log.push(WatchEvent {
            version: self.next_version,
            collection: key.0.clone(),
            namespace: key.1.clone(),
            kind,
            object,
        });
    }
}

/// JSON pointers of the leaves of `value` (the fields a manager sets),
/// leaving out the type and metadata.
fn leaves(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                if pointer.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str())
                {
                    continue;
                }
                leaves(
                    v,
                    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ if !pointer.is_empty() => out.push((pointer, value.clone())),
        _ => {}
    }
}

#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

/// A parsed request path.
struct Target {
    collection: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // api/v1/... or apis/<group>/<version>/...
    let prefix_len = match *parts.first()? {
        "api" => 2,
        "apis" => 3,
        _ => return None,
    };
    let prefix = parts.get(..prefix_len)?.join("/");
    let rest = &parts[prefix_len..];
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let plural = rest.first()?;
    Some(Target {
        collection: format!("{prefix}/{plural}"),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn status_body(code: u16, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_type(headers: &::http::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][key].as_str() == Some(value)
    })
}

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Stores `object` as if created by a user (metadata filled in).
    pub fn create(&self, collection: &str, object: Value) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("named")
            .to_string();
        let mut state = self.state.lock().unwrap();
        let object = Self::created(&mut state, object);
        let key = (collection.to_string(), namespace, name);
        state.objects.insert(key.clone(), object.clone());
        state.record(&key, "ADDED", &object);
    }

    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .get(&(collection.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every object of `collection` in `namespace`.
    pub fn list(&self, collection: &str, namespace: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|((c, ns, _), _)| c == collection && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Changes a stored object as a user or another controller would
    /// (bumping `generation` when the spec changes).
    pub fn update(
        &self,
        collection: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut state = self.state.lock().unwrap();
        let key = (
            collection.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let mut object = state.objects.get(&key).cloned().expect("object exists");
        let spec_before = object["spec"].clone();
        change(&mut object);
        if object["spec"] != spec_before {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        state.objects.insert(key.clone(), object.clone());
        state.record(&key, "MODIFIED", &object);
    }

    /// Removes an object outright (no finalizers), e.g. a pod the test's
    /// stand-in StatefulSet controller replaces.
    pub fn remove(&self, collection: &str, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let key: Key = (collection.into(), namespace.into(), name.into());
        if let Some(object) = state.objects.remove(&key) {
            state.record(&key, "DELETED", &object);
        }
    }

    /// Fails the next `count` requests with `method` whose path contains
    /// `fragment`, with a 500.
    pub fn fail_next(&self, method: Method, fragment: &str, count: usize) {
        let mut state = self.state.lock().unwrap();
        state.failures.push((method, fragment.to_string(), count));
    }

    /// Requests seen so far, as "METHOD path".
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    fn created(state: &mut State, mut object: Value) -> Value {
        state.next_version += 1;
        let metadata = &mut object["metadata"];
        if metadata["uid"].is_null() {
            metadata["uid"] = json!(format!(
                "00000000-0000-4000-8000-{:012}",
                state.next_version
            ));
        }
        metadata["resourceVersion"] = json!(state.next_version.to_string());
        metadata["creationTimestamp"] = json!("2026-11-25T00:00:00Z");
        if metadata["generation"].is_null() {
            metadata["generation"] = json!(1);
        }
        object
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().map(str::to_string);
        let content_type = content_type(&parts.headers);
        let (code, value) =
            self.answer(&parts.method, &path, query.as_deref(), &content_type, &body);
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap()))
            .unwrap()
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut state = self.state.lock().unwrap();
        state.requests.push(format!("{method} {path}"));
        if let Some(failure) = state.failures.iter_mut().find(|(m, fragment, left)| {
            m == method && path.contains(fragment.as_str()) && *left > 0
        }) {
            failure.2 -= 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                status_body(
                    500,
                    "InternalError",
                    format!("injected failure of {method} {path}"),
                ),
            );
        }
        let Some(target) = parse_path(path) else {
            return (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", format!("no route {path}")),
            );
        };
        let key = |name: &str| {
            (
                target.collection.clone(),
                target.namespace.clone(),
                name.to_string(),
            )
        };
        let not_found = |name: &str| {
            (
                StatusCode::NOT_FOUND,
                status_body(
                    404,
                    "NotFound",
                    format!("{} {name:?} not found", target.collection),
                ),
            )
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        status_body(400, "BadRequest", format!("body is not JSON: {e}")),
                    )
                }
            }
        };

        match (method.clone(), target.name.clone()) {
            (Method::GET, Some(name)) => match state.objects.get(&key(&name)) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(&name),
            },
            (Method::GET, None) => {
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((c, ns, _), _)| {
                        *c == target.collection
                            && (target.namespace.is_empty() || *ns == target.namespace)
                    })
                    .map(|(_, v)| v.clone())
                    .filter(|v| labels_match(v, &selector))
                    .collect();
                let version = state.next_version.to_string();
                (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": version }, "items": items }),
                )
            }
            (Method::POST, None) => {
                let mut object = body;
                if object["metadata"]["name"].is_null() {
                    let prefix = object["metadata"]["generateName"]
                        .as_str()
                        .unwrap_or("object-")
                        .to_string();
                    object["metadata"]["name"] =
                        json!(format!("{prefix}{}", state.next_version + 1));
                }
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if state.objects.contains_key(&key(&name)) {
                    return (
                        StatusCode::CONFLICT,
                        status_body(409, "AlreadyExists", format!("{name} exists")),
                    );
                }
                object["metadata"]["namespace"] = json!(target.namespace);
                let object = Self::created(&mut state, object);
                state.objects.insert(key(&name), object.clone());
                state.record(&key(&name), "ADDED", &object);
                (StatusCode::CREATED, object)
            }
            (Method::PATCH, Some(name)) => {
                let existing = state.objects.get(&key(&name)).cloned();
                let status_only = target.subresource.as_deref() == Some("status");
                let manager = query_param(query, "fieldManager").unwrap_or_default();
                let force = query_param(query, "force").as_deref() == Some("true");
                let applying = content_type.starts_with("application/apply-patch");
                let mut set_fields = Vec::new();
                if !content_type.starts_with("application/json-patch") {
                    leaves(&body, String::new(), &mut set_fields);
                }
                // Server-side apply refuses to change a field another
                // manager owns, unless forced.
                if let (true, false, Some(old)) = (applying, force, &existing) {
                    let owners = state.owners.get(&key(&name));
                    for (pointer, value) in &set_fields {
                        let owner = owners.and_then(|o| o.get(pointer));
                        if owner.is_some_and(|o| *o != manager)
                            && old.pointer(pointer) != Some(value)
                        {
                            return (
                                StatusCode::CONFLICT,
                                status_body(409, "Conflict", format!("Apply failed with 1 conflict: conflict with {:?}: {pointer}", owner.unwrap())),
                            );
                        }
                    }
                }
                let updated = if content_type.starts_with("application/apply-patch") {
                    match (existing, status_only) {
                        (None, true) => return not_found(&name),
                        (None, false) => {
                            let mut object = body;
                            object["metadata"]["namespace"] = json!(target.namespace);
                            Self::created(&mut state, object)
                        }
                        (Some(mut object), true) => {
                            object["status"] = body["status"].clone();
                            object
                        }
                        (Some(old), false) => {
                            let mut object = body;
                            for kept in [
                                "uid",
                                "creationTimestamp",
                                "generation",
                                "finalizers",
                                "deletionTimestamp",
                                "resourceVersion",
                            ] {
                                if !old["metadata"][kept].is_null() {
                                    object["metadata"][kept] = old["metadata"][kept].clone();
                                }
                            }
                            object["metadata"]["namespace"] = json!(target.namespace);
                            if !old["status"].is_null() {
                                object["status"] = old["status"].clone();
                            }
                            object
                        }
                    }
                } else {
                    let Some(mut object) = existing else {
                        return not_found(&name);
                    };
                    let before = object.clone();
                    if content_type.starts_with("application/json-patch") {
                        // Kubernetes treats an absent finalizers list as null.
                        if object["metadata"].get("finalizers").is_none() {
                            object["metadata"]["finalizers"] = Value::Null;
                        }
                        let patch: json_patch::Patch = match serde_json::from_value(body) {
                            Ok(p) => p,
                            Err(e) => {
                                return (
                                    StatusCode::BAD_REQUEST,
                                    status_body(400, "BadRequest", e.to_string()),
                                )
                            }
                        };
                        if let Err(e) = json_patch::patch(&mut object, &patch) {
                            return (
                                StatusCode::UNPROCESSABLE_ENTITY,
                                status_body(422, "Invalid", e.to_string()),
                            );
                        }
                        if object["metadata"]["finalizers"].is_null() {
                            object["metadata"]
                                .as_object_mut()
                                .unwrap()
                                .remove("finalizers");
                        }
                    } else {
                        json_patch::merge(&mut object, &body);
                    }
                    if status_only {
                        let status = object["status"].clone();
                        object = before;
                        object["status"] = status;
                    }
                    object
                };
                let mut object = updated;
                let old_spec = state.objects.get(&key(&name)).map(|o| o["spec"].clone());
                if let Some(old_spec) = old_spec {
                    if old_spec != object["spec"] && !status_only {
                        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
                        object["metadata"]["generation"] = json!(generation + 1);
                    }
                }
                state.next_version += 1;
                object["metadata"]["resourceVersion"] = json!(state.next_version.to_string());
                let finalized = !object["metadata"]["deletionTimestamp"].is_null()
                    && object["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty());
                let owned = state.owners.entry(key(&name)).or_default();
                for (pointer, value) in set_fields {
                    if value.is_null() {
                        owned.remove(&pointer);
                    } else {
                        owned.insert(pointer, manager.clone());
                    }
                }
                let kind = if state.objects.contains_key(&key(&name)) {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                if finalized {
                    state.objects.remove(&key(&name));
                    state.owners.remove(&key(&name));
                    state.record(&key(&name), "DELETED", &object);
                } else {
                    state.objects.insert(key(&name), object.clone());
                    state.record(&key(&name), kind, &object);
                }
                (StatusCode::OK, object)
            }
            (Method::DELETE, Some(name)) => {
                let Some(mut object) = state.objects.get(&key(&name)).cloned() else {
                    return not_found(&name);
                };
                let held = object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if held {
                    if object["metadata"]["deletionTimestamp"].is_null() {
                        object["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:01Z");
                    }
                    state.objects.insert(key(&name), object.clone());
                    state.record(&key(&name), "MODIFIED", &object);
                } else {
                    state.objects.remove(&key(&name));
                    state.owners.remove(&key(&name));
                    state.record(&key(&name), "DELETED", &object);
                }
                (StatusCode::OK, object)
            }
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                status_body(405, "MethodNotAllowed", format!("{method} {path}")),
            ),
        }
    }
}

/// Serving the fake over HTTP, for real operator processes: a kubeconfig
/// pointing at it, and watches as streams of JSON lines.
impl FakeApiServer {
    /// Listens on a free loopback port; returns its address.
    pub async fn serve_http(&self) -> std::net::SocketAddr {
        let listener = crate::bind_unique_port();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(http_request)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A kubeconfig for a client of [`FakeApiServer::serve_http`].
    pub fn kubeconfig(addr: std::net::SocketAddr, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: fake\n  user:\n    token: fake\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\n"
        )
    }

    /// Changes of `collection` (in `namespace`, or all when empty) after
    /// resourceVersion `after`.
    fn changes_after(&self, collection: &str, namespace: &str, after: u64) -> Vec<WatchEvent> {
        let state = self.state.lock().unwrap();
        state
            .log
            .iter()
            .filter(|e| e.version > after && e.collection == collection)
            .filter(|e| namespace.is_empty() || e.namespace == namespace)
            .cloned()
            .collect()
    }
}

async fn http_request(
    axum::extract::State(fake): axum::extract::State<FakeApiServer>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let json_response = |code: StatusCode, body: axum::body::Body| {
        axum::response::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };
    if parts.method == Method::GET
        && query_param(query.as_deref(), "watch").as_deref() == Some("true")
    {
        let Some(target) = parse_path(&path) else {
            return json_response(StatusCode::NOT_FOUND, axum::body::Body::empty());
        };
        fake.state
            .lock()
            .unwrap()
            .requests
            .push(format!("WATCH {path}"));
        let after: u64 = query_param(query.as_deref(), "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Watches end early so clients re-watch, as with a real server.
        let seconds: u64 = query_param(query.as_deref(), "timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
            .min(30);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let stream = futures::stream::unfold(after, move |last| {
            let fake = fake.clone();
            let (collection, namespace) = (target.collection.clone(), target.namespace.clone());
            async move {
                loop {
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    let changes = fake.changes_after(&collection, &namespace, last);
                    if let Some(newest) = changes.last().map(|e| e.version) {
                        let mut lines = Vec::new();
                        for change in changes {
                            serde_json::to_writer(
                                &mut lines,
                                &json!({ "type": change.kind, "object": change.object }),
                            )
                            .unwrap();
                            lines.push(b'\n');
                        }
                        return Some((Ok::<_, Infallible>(bytes::Bytes::from(lines)), newest));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        });
        return json_response(StatusCode::OK, axum::body::Body::from_stream(stream));
    }
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let content_type = content_type(&parts.headers);
    let (code, value) = fake.answer(&parts.method, &path, query.as_deref(), &content_type, &body);
    json_response(
        code,
        axum::body::Body::from(serde_json::to_vec(&value).unwrap()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collection_namespace_name_and_subresource() {
        let t =
            parse_path("/apis/kafka.tideline.dev/v1alpha1/namespaces/ns/kafkaclusters/demo/status")
                .unwrap();
        assert_eq!(
            t.collection,
            "apis/kafka.tideline.dev/v1alpha1/kafkaclusters"
        );
        assert_eq!(t.namespace, "ns");
        assert_eq!(t.name.as_deref(), Some("demo"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_path("/api/v1/namespaces/ns/pods").unwrap();
        assert_eq!((t.collection.as_str(), t.name), ("api/v1/pods", None));
        assert_eq!(
            percent_decode("app.kubernetes.io%2Fname%3Dtideline"),
            "app.kubernetes.io/name=tideline"
        );
    }
}
