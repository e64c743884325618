//! A small client of the vSphere Web Services (VIM SOAP) API: one session (login, keepalive,
//! re-login when the server says `NotAuthenticated`), method calls with faults as errors,
//! PropertyCollector reads over a container view, and task polling.
//!
//! Answers are read with namespaces resolved: the `xsi:type` of a value is found by the XML
//! Schema instance namespace, whatever prefix the server gives it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cloudlet_transport::http::{Bytes, Http, HttpError, Method};

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The API release cloudlet speaks (vSphere 7.0 U3 and later; the simulator accepts it).
const SOAP_ACTION: &str = "urn:vim25/7.0.3.0";

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq)]
pub enum VimError {
    /// No usable answer (connection, TLS, HTTP status without a SOAP fault, unreadable XML).
    Transport(String),
    /// A SOAP fault: its type (`NotAuthenticated`, `DuplicateName`, ...) and message.
    Fault {
        /// The fault's type.
        kind: String,
        /// The server's message.
        message: String,
    },
    /// A task ended in error.
    Task {
        /// The task's description.
        task: String,
        /// The fault's type.
        kind: String,
        /// The server's message.
        message: String,
    },
}

impl std::fmt::Display for VimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VimError::Transport(m) => write!(f, "vSphere did not answer usably: {m}"),
            VimError::Fault { kind, message } => write!(f, "vSphere refused ({kind}): {message}"),
            VimError::Task {
                task,
                kind,
                message,
            } => write!(f, "vSphere task {task} failed ({kind}): {message}"),
        }
    }
}

/// An element of an answer, namespaces resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// The local name.
    pub name: String,
    /// The local part of its `xsi:type`, if any.
    pub ty: Option<String>,
    /// The `type` attribute of a managed object reference.
    pub moref_type: Option<String>,
    /// Its text (trimmed), for leaf elements.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Node>,
}

impl Node {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The node at a path of child names.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, p| n.child(p))
    }

    /// The text at a path of child names.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|n| n.text.as_str())
    }

    /// This element as a managed object reference.
    pub fn moref(&self) -> Option<MoRef> {
        Some(MoRef {
            ty: self.moref_type.clone()?,
            value: self.text.clone(),
        })
    }
}

/// Parses an XML document into [`Node`]s.
pub fn parse(xml: &str) -> Result<Node, roxmltree::Error> {
    fn conv(n: roxmltree::Node<'_, '_>) -> Node {
        let ty = n
            .attributes()
            .find(|a| a.namespace() == Some(XSI) && a.name() == "type")
            .map(|a| {
                a.value()
                    .rsplit_once(':')
                    .map_or(a.value(), |(_, t)| t)
                    .to_string()
            });
        let children: Vec<Node> = n.children().filter(|c| c.is_element()).map(conv).collect();
        let text = if children.is_empty() {
            n.text().unwrap_or("").trim().to_string()
        } else {
            String::new()
        };
        Node {
            name: n.tag_name().name().to_string(),
            ty,
            moref_type: n
                .attributes()
                .find(|a| a.namespace().is_none() && a.name() == "type")
                .map(|a| a.value().to_string()),
            text,
            children,
        }
    }
    let doc = roxmltree::Document::parse(xml)?;
    Ok(conv(doc.root_element()))
}

/// A managed object reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    /// Its type (`VirtualMachine`).
    pub ty: String,
    /// Its id (`vm-42`).
    pub value: String,
}

impl MoRef {
    /// A reference.
    pub fn new(ty: &str, value: &str) -> MoRef {
        MoRef {
            ty: ty.into(),
            value: value.into(),
        }
    }

    /// `<tag type="TY">VALUE</tag>`.
    pub fn xml(&self, tag: &str) -> String {
        format!(
            "<{tag} type=\"{}\">{}</{tag}>",
            esc(&self.ty),
            esc(&self.value)
        )
    }
}

/// XML text escaped for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            c => o.push(c),
        }
    }
    o
}

/// The service's entry points.
#[derive(Debug, Clone)]
pub struct ServiceContent {
    /// The inventory root.
    pub root_folder: MoRef,
    /// The PropertyCollector.
    pub property_collector: MoRef,
    /// The ViewManager.
    pub view_manager: MoRef,
    /// The SessionManager.
    pub session_manager: MoRef,
    /// `VirtualCenter` or `HostAgent` (a standalone ESXi).
    pub api_type: String,
}

/// One object's properties, by property path.
pub type Props = BTreeMap<String, Node>;

/// A logged-in session.
pub struct Vim {
    http: Http,
    path: String,
    user: String,
    password: String,
    /// The session cookie.
    cookie: std::sync::RwLock<Option<String>>,
    /// One re-login at a time.
    relogin: tokio::sync::Mutex<()>,
    /// The service's entry points.
    pub content: ServiceContent,
    /// Logins done (the first and every re-login).
    pub logins: AtomicU64,
    /// Calls sent, by method.
    calls: std::sync::Mutex<BTreeMap<String, u64>>,
    /// The keepalive task, owned: aborted when the session is dropped.
    keepalive: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Vim {
    fn drop(&mut self) {
        if let Some(t) = self
            .keepalive
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Vim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vim")
            .field("http", &self.http)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn envelope(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )
}

/// The fault in a SOAP body, if any.
fn fault(body: &Node) -> Option<VimError> {
    let f = body.child("Fault")?;
    let message = f.text_at(&["faultstring"]).unwrap_or("").to_string();
    let kind = f
        .child("detail")
        .and_then(|d| d.children.first())
        .map(|d| {
            d.ty.clone()
                .unwrap_or_else(|| d.name.trim_end_matches("Fault").to_string())
        })
        .unwrap_or_else(|| "Fault".into());
    Some(VimError::Fault { kind, message })
}

impl Vim {
    /// Connects to `base` (`https://vcenter`; the SDK path is `/sdk`), reads the service
    /// content and logs in.
    pub async fn connect(http: Http, user: &str, password: &str) -> Result<Arc<Vim>, VimError> {
        let mut vim = Vim {
            http,
            path: "/sdk".into(),
            user: user.into(),
            password: password.into(),
            cookie: std::sync::RwLock::new(None),
            relogin: tokio::sync::Mutex::new(()),
            content: ServiceContent {
                root_folder: MoRef::new("Folder", ""),
                property_collector: MoRef::new("PropertyCollector", ""),
                view_manager: MoRef::new("ViewManager", ""),
                session_manager: MoRef::new("SessionManager", ""),
                api_type: String::new(),
            },
            logins: AtomicU64::new(0),
            calls: std::sync::Mutex::default(),
            keepalive: std::sync::Mutex::default(),
        };
        let sc = vim
            .raw(
                "RetrieveServiceContent",
                &MoRef::new("ServiceInstance", "ServiceInstance"),
                "",
            )
            .await?;
        let rv = sc
            .child("returnval")
            .ok_or_else(|| VimError::Transport("RetrieveServiceContent: no returnval".into()))?;
        let get = |name: &str| {
            rv.child(name)
                .and_then(Node::moref)
                .ok_or_else(|| VimError::Transport(format!("the service content has no {name}")))
        };
        vim.content = ServiceContent {
            root_folder: get("rootFolder")?,
            property_collector: get("propertyCollector")?,
            view_manager: get("viewManager")?,
            session_manager: get("sessionManager")?,
            api_type: rv.text_at(&["about", "apiType"]).unwrap_or("").to_string(),
        };
        vim.login().await?;
        Ok(Arc::new(vim))
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http.requests.load(Ordering::Relaxed)
    }

    /// Calls sent so far, by method.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn login(&self) -> Result<(), VimError> {
        let args = format!(
            "<userName>{}</userName><password>{}</password>",
            esc(&self.user),
            esc(&self.password)
        );
        self.raw("Login", &self.content.session_manager, &args)
            .await?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the session (the next call logs in again).
    pub async fn logout(&self) -> Result<(), VimError> {
        self.raw("Logout", &self.content.session_manager, "")
            .await
            .map(|_| ())
    }

    /// Sends one call; the `...Response` element, or the fault.
    async fn raw(&self, method: &str, this: &MoRef, args: &str) -> Result<Node, VimError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(method.to_string())
            .or_default() += 1;
        let body = envelope(&format!(
            "<{method} xmlns=\"urn:vim25\">{}{args}</{method}>",
            this.xml("_this")
        ));
        let cookie = self
            .cookie
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut headers = vec![
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", SOAP_ACTION),
        ];
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        let answer = self
            .http
            .send(Method::POST, &self.path, &headers, Bytes::from(body))
            .await
            .map_err(|e| match e {
                HttpError::Transport(m) | HttpError::Body(m) => VimError::Transport(m),
                HttpError::Status(s, b) => VimError::Transport(format!("HTTP {s}: {b}")),
            })?;
        if let Some(c) = answer.header("set-cookie") {
            let pair = c.split(';').next().unwrap_or(c).trim().to_string();
            *self
                .cookie
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pair);
        }
        let text = String::from_utf8_lossy(&answer.body);
        let doc = parse(&text).map_err(|e| {
            VimError::Transport(format!(
                "HTTP {} to {method}: not XML: {e}: {}",
                answer.status,
                text.chars().take(300).collect::<String>()
            ))
        })?;
        let body = doc
            .child("Body")
            .ok_or_else(|| VimError::Transport(format!("{method}: no SOAP body")))?;
        if let Some(f) = fault(body) {
            return Err(f);
        }
        body.children
            .first()
            .cloned()
            .ok_or_else(|| VimError::Transport(format!("{method}: empty answer")))
    }

    /// Calls `method` on `this` with `args` (XML in the order of the method's schema); logs in
    /// again once when the session has expired.
    pub async fn call(&self, method: &str, this: &MoRef, args: &str) -> Result<Node, VimError> {
        let before = self.logins.load(Ordering::Relaxed);
        match self.raw(method, this, args).await {
            Err(VimError::Fault { kind, .. }) if kind == "NotAuthenticated" => {
                {
                    let _one = self.relogin.lock().await;
                    // Another call may have logged in meanwhile.
                    if self.logins.load(Ordering::Relaxed) == before {
                        tracing::info!(user = %self.user, "vSphere session expired; logging in again");
                        self.login().await?;
                    }
                }
                self.raw(method, this, args).await
            }
            other => other,
        }
    }

    /// Keeps the session alive while `vim` lives: a cheap call every `every` (vCenter ends
    /// sessions idle for about 30 minutes). The task belongs to the session.
    pub fn keepalive(vim: &Arc<Vim>, every: Duration) {
        let weak: Weak<Vim> = Arc::downgrade(vim);
        // Not detached: the session owns the task and aborts it when dropped.
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(vim) = weak.upgrade() else { break };
                if let Err(e) = vim
                    .call(
                        "CurrentTime",
                        &MoRef::new("ServiceInstance", "ServiceInstance"),
                        "",
                    )
                    .await
                {
                    tracing::warn!(error = %e, "vSphere keepalive");
                }
            }
        });
        *vim.keepalive
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }

    /// The `properties` of every object of type `ty` in the inventory.
    pub async fn retrieve(
        &self,
        ty: &str,
        properties: &[&str],
    ) -> Result<Vec<(MoRef, Props)>, VimError> {
        let root = self.content.root_folder.clone();
        self.retrieve_in(&root, ty, properties).await
    }

    /// The `properties` of every object of type `ty` under `container` (a folder or
    /// datacenter).
    pub async fn retrieve_in(
        &self,
        container: &MoRef,
        ty: &str,
        properties: &[&str],
    ) -> Result<Vec<(MoRef, Props)>, VimError> {
        let view = self
            .call(
                "CreateContainerView",
                &self.content.view_manager,
                &format!(
                    "{}<type>{}</type><recursive>true</recursive>",
                    container.xml("container"),
                    esc(ty)
                ),
            )
            .await?
            .child("returnval")
            .and_then(Node::moref)
            .ok_or_else(|| VimError::Transport("CreateContainerView: no view".into()))?;
        let paths: String = properties
            .iter()
            .map(|p| format!("<pathSet>{}</pathSet>", esc(p)))
            .collect();
        let spec = format!(
            "<specSet><propSet><type>{}</type>{paths}</propSet><objectSet>{}<skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>view</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options><maxObjects>500</maxObjects></options>",
            esc(ty),
            view.xml("obj")
        );
        let result = self.collect(&spec).await;
        // A view left behind costs the server memory until the session ends: always destroy.
        let _ = self.call("DestroyView", &view, "").await;
        result
    }

    /// The `properties` of the objects `objs` (all of one type).
    pub async fn retrieve_objects(
        &self,
        objs: &[MoRef],
        properties: &[&str],
    ) -> Result<Vec<(MoRef, Props)>, VimError> {
        let Some(first) = objs.first() else {
            return Ok(Vec::new());
        };
        let paths: String = properties
            .iter()
            .map(|p| format!("<pathSet>{}</pathSet>", esc(p)))
            .collect();
        let sets: String = objs
            .iter()
            .map(|o| format!("<objectSet>{}</objectSet>", o.xml("obj")))
            .collect();
        let spec = format!(
            "<specSet><propSet><type>{}</type>{paths}</propSet>{sets}</specSet><options/>",
            esc(&first.ty)
        );
        self.collect(&spec).await
    }

    async fn collect(&self, spec: &str) -> Result<Vec<(MoRef, Props)>, VimError> {
        let pc = &self.content.property_collector;
        let mut out = Vec::new();
        let mut answer = self.call("RetrievePropertiesEx", pc, spec).await?;
        while let Some(rv) = answer.child("returnval") {
            for o in rv.all("objects") {
                let Some(obj) = o.child("obj").and_then(Node::moref) else {
                    continue;
                };
                let mut props = Props::new();
                for p in o.all("propSet") {
                    if let (Some(name), Some(val)) = (p.text_at(&["name"]), p.child("val")) {
                        props.insert(name.to_string(), val.clone());
                    }
                }
                out.push((obj, props));
            }
            match rv.text_at(&["token"]).filter(|t| !t.is_empty()) {
                Some(token) => {
                    answer = self
                        .call(
                            "ContinueRetrievePropertiesEx",
                            pc,
                            &format!("<token>{}</token>", esc(token)),
                        )
                        .await?;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Waits for `task` to end; its result on success.
    pub async fn wait(&self, task: &MoRef, what: &str) -> Result<Option<Node>, VimError> {
        let mut pause = Duration::from_millis(20);
        loop {
            let got = self
                .retrieve_objects(
                    std::slice::from_ref(task),
                    &["info.state", "info.error", "info.result"],
                )
                .await?;
            let props = got.into_iter().next().map(|(_, p)| p).unwrap_or_default();
            match props.get("info.state").map(|n| n.text.as_str()) {
                Some("success") => return Ok(props.get("info.result").cloned()),
                Some("error") => {
                    let e = props.get("info.error");
                    return Err(VimError::Task {
                        task: what.to_string(),
                        kind: e
                            .and_then(|e| e.child("fault"))
                            .and_then(|f| f.ty.clone())
                            .unwrap_or_else(|| "Fault".into()),
                        message: e
                            .and_then(|e| e.text_at(&["localizedMessage"]))
                            .unwrap_or("")
                            .to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    return Err(VimError::Transport(format!(
                        "the task of {what} ({}) is gone",
                        task.value
                    )));
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Calls a `..._Task` method and waits for the task.
    pub async fn task(
        &self,
        method: &str,
        this: &MoRef,
        args: &str,
        what: &str,
    ) -> Result<Option<Node>, VimError> {
        let answer = self.call(method, this, args).await?;
        let task = answer
            .child("returnval")
            .and_then(Node::moref)
            .ok_or_else(|| VimError::Transport(format!("{method}: no task")))?;
        self.wait(&task, what).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_whatever_the_prefix_and_faults() {
        let xml = r#"<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" xmlns:XSI="http://www.w3.org/2001/XMLSchema-instance"><S:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="VirtualMachine">vm-1</obj><propSet><name>config.hardware.device</name><val XSI:type="ArrayOfVirtualDevice"><VirtualDevice XSI:type="vim25:VirtualVmxnet3"><key>4000</key><macAddress>00:50:56:AA:bb:cc</macAddress></VirtualDevice></val></propSet></objects></returnval></RetrievePropertiesExResponse></S:Body></S:Envelope>"#;
        let doc = parse(xml).unwrap();
        let resp = &doc.child("Body").unwrap().children[0];
        let objs = resp.at(&["returnval", "objects"]).unwrap();
        assert_eq!(
            objs.child("obj").and_then(Node::moref),
            Some(MoRef::new("VirtualMachine", "vm-1"))
        );
        let dev = &objs.at(&["propSet", "val"]).unwrap().children[0];
        assert_eq!(dev.ty.as_deref(), Some("VirtualVmxnet3"));
        assert_eq!(dev.text_at(&["key"]), Some("4000"));

        let f = parse(r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The session is not authenticated.</faultstring><detail><NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><privilegeId>System.View</privilegeId></NotAuthenticatedFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#).unwrap();
        assert_eq!(
            fault(f.child("Body").unwrap()),
            Some(VimError::Fault {
                kind: "NotAuthenticated".into(),
                message: "The session is not authenticated.".into()
            })
        );
        assert_eq!(esc("a<b & \"c\"\n"), "a&lt;b &amp; &quot;c&quot;&#10;");
    }
}
