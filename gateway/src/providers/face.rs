//! Face verification (人脸识别) in the vendors' two-call shape: [`FaceVerifier::start`]
//! opens a provider session and gives the page to send the applicant to; the verdict is
//! fetched by the gateway itself with [`FaceVerifier::fetch_result`], never taken from
//! the client.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use xuanfang_hub::{BatchId, FamilyId};

use super::{random_ref, ProviderError};

/// What the gateway tells the provider when a face check starts.
#[derive(Clone, Debug)]
pub struct FaceStart {
    pub batch: BatchId,
    pub family: FamilyId,
    /// The main applicant, as the bureau holds the name.
    pub applicant: String,
}

/// A session opened at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaceSession {
    pub session: String,
    /// Where the applicant's phone goes for the check.
    pub url: String,
}

/// The provider's verdict on one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaceVerdict {
    pub passed: bool,
    pub score: Option<u8>,
}

#[async_trait]
pub trait FaceVerifier: Send + Sync + 'static {
    /// Opens a session (a billed attempt).
    async fn start(&self, req: FaceStart) -> Result<FaceSession, ProviderError>;
    /// The page of a session this provider opened, to send the applicant back to.
    fn url_of(&self, session: &str) -> String;
    /// The verdict, server to server; `None` while the applicant has not finished.
    async fn fetch_result(&self, session: &str) -> Result<Option<FaceVerdict>, ProviderError>;
}

/// One sandbox session.
#[derive(Clone, Debug)]
pub struct SandboxFaceSession {
    pub batch: BatchId,
    pub family: FamilyId,
    pub applicant: String,
    pub verdict: Option<FaceVerdict>,
}

/// 沙箱 face provider: its page (`/sandbox/face/{session}`) has a pass and a fail
/// button. Sessions live in this process's memory.
#[derive(Default)]
pub struct SandboxFace {
    sessions: Mutex<HashMap<String, SandboxFaceSession>>,
}

impl SandboxFace {
    pub fn session(&self, session: &str) -> Option<SandboxFaceSession> {
        self.sessions.lock().get(session).cloned()
    }

    /// The applicant pressed pass or fail. A session gets one verdict: a second,
    /// different one is refused (`false`).
    pub fn decide(&self, session: &str, verdict: FaceVerdict) -> Option<bool> {
        let mut s = self.sessions.lock();
        let s = s.get_mut(session)?;
        match s.verdict {
            None => {
                s.verdict = Some(verdict);
                Some(true)
            }
            Some(v) => Some(v == verdict),
        }
    }
}

#[async_trait]
impl FaceVerifier for SandboxFace {
    async fn start(&self, req: FaceStart) -> Result<FaceSession, ProviderError> {
        let session = random_ref("sbf-");
        self.sessions.lock().insert(
            session.clone(),
            SandboxFaceSession {
                batch: req.batch,
                family: req.family,
                applicant: req.applicant,
                verdict: None,
            },
        );
        Ok(FaceSession {
            url: self.url_of(&session),
            session,
        })
    }

    fn url_of(&self, session: &str) -> String {
        format!("/sandbox/face/{session}")
    }

    async fn fetch_result(&self, session: &str) -> Result<Option<FaceVerdict>, ProviderError> {
        match self.sessions.lock().get(session) {
            Some(s) => Ok(s.verdict),
            None => Err(ProviderError(format!("unknown session {session}"))),
        }
    }
}
