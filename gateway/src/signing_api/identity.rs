//! The main applicants' identities (申请人全名, 身份证号) of a batch, from the family
//! sheet's optional columns.
//!
//! Stored apart from the batch: the batch (statics, events, exports, the hall) holds only
//! the masked name, so nothing public can show more. The identities of a batch are one
//! JSON map family → identity, sealed with signing's data key (AES-256-GCM, the
//! batch's id as associated data, so one batch's file cannot be passed off as
//! another's) and kept as the named blob `identities-<sha256(batch id)>`, where every
//! gateway of a deployment finds it (the blob directory is shared like the photos').
//!
//! Who sees what: the family's own lease (the PDF) and the operator's review record show
//! them whole; the family's page shows the masked forms; the move-in notice prints the
//! full name and the masked number.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use xuanfang_allocator::sealing::Sealer;
use xuanfang_allocator::{AllocError, SigningOptions};
use xuanfang_hub::import::mask_name;
use xuanfang_hub::signing::Identity;
use xuanfang_hub::{BatchId, FamilyId};

use crate::blobs::BlobStore;

/// Why the identities of a batch could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("blob store: {0}")]
    Store(#[from] std::io::Error),
    #[error(transparent)]
    Sealed(#[from] AllocError),
    #[error("identities file of batch {0}: not valid JSON after decryption")]
    Damaged(String),
}

type Book = HashMap<FamilyId, Identity>;

/// Keeps and reads the sealed identities of each batch (read once per batch and held).
pub struct Identities {
    sealer: Sealer,
    held: Mutex<HashMap<BatchId, Arc<Book>>>,
}

fn blob_name(batch: &BatchId) -> String {
    format!(
        "identities-{}",
        hex::encode(crate::blobs::sha256(batch.0.as_bytes()))
    )
}

fn aad(batch: &BatchId) -> Vec<u8> {
    format!("xuanfang identities of batch {}", batch.0).into_bytes()
}

impl Identities {
    pub fn new(options: &SigningOptions) -> Self {
        Self {
            sealer: Sealer::new(options),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Seals and stores the identities of a batch about to be loaded (replacing any the
    /// name held: a batch id is loaded once, the caller checks it is new).
    pub async fn store(
        &self,
        blobs: &dyn BlobStore,
        batch: &BatchId,
        book: Book,
    ) -> Result<(), IdentityError> {
        let clear =
            serde_json::to_vec(&book).map_err(|_| IdentityError::Damaged(batch.0.clone()))?;
        let sealed = self.sealer.seal_bytes(&clear, &aad(batch));
        blobs.put_named(&blob_name(batch), &sealed).await?;
        self.held.lock().insert(batch.clone(), Arc::new(book));
        Ok(())
    }

    async fn book(
        &self,
        blobs: &dyn BlobStore,
        batch: &BatchId,
    ) -> Result<Arc<Book>, IdentityError> {
        let held = self.held.lock().get(batch).cloned();
        if let Some(b) = held {
            return Ok(b);
        }
        let book = match blobs.get_named(&blob_name(batch)).await? {
            None => Book::new(),
            Some(sealed) => {
                let clear = self.sealer.open_bytes(&sealed, &aad(batch), "identities")?;
                serde_json::from_slice(&clear)
                    .map_err(|_| IdentityError::Damaged(batch.0.clone()))?
            }
        };
        let book = Arc::new(book);
        self.held.lock().insert(batch.clone(), book.clone());
        Ok(book)
    }

    /// The identity of a family, if its row gave one.
    pub async fn of(
        &self,
        blobs: &dyn BlobStore,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<Identity>, IdentityError> {
        Ok(self.book(blobs, batch).await?.get(family).cloned())
    }
}

/// An identity as a page shows it: whole to the operator's review record, masked to
/// the family's own page.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IdentityShown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// `false`: the values are the masked forms.
    pub whole: bool,
}

impl IdentityShown {
    pub fn whole(i: &Identity) -> Self {
        Self {
            full_name: i.full_name.clone(),
            id_number: i.id_number.as_ref().map(|n| n.as_str().to_owned()),
            whole: true,
        }
    }

    pub fn masked(i: &Identity) -> Self {
        Self {
            full_name: i.full_name.as_deref().map(mask_name),
            id_number: i.id_number.as_ref().map(|n| n.masked()),
            whole: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::MemoryBlobs;
    use xuanfang_hub::signing::IdNumber;

    fn book() -> Book {
        let mut b = Book::new();
        b.insert(
            FamilyId::from("F1"),
            Identity {
                full_name: Some("张三丰".into()),
                id_number: Some(IdNumber::parse("11010519491231002X").unwrap()),
            },
        );
        b
    }

    #[tokio::test]
    async fn stored_sealed_and_read_back_by_another_gateway() {
        let blobs = MemoryBlobs::default();
        let batch = BatchId::from("b1");
        Identities::new(&SigningOptions::new([7; 32]))
            .store(&blobs, &batch, book())
            .await
            .unwrap();
        let raw = blobs.get_named(&blob_name(&batch)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("19491231") && !text.contains("张三丰"));
        // A second gateway with the same key reads it from the store.
        let other = Identities::new(&SigningOptions::new([7; 32]));
        let i = other
            .of(&blobs, &batch, &FamilyId::from("F1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(i.full_name.as_deref(), Some("张三丰"));
        assert_eq!(
            other
                .of(&blobs, &batch, &FamilyId::from("F2"))
                .await
                .unwrap(),
            None
        );
        // Another key, or the file under another batch's name, does not open.
        assert!(Identities::new(&SigningOptions::new([8; 32]))
            .of(&blobs, &batch, &FamilyId::from("F1"))
            .await
            .is_err());
        let b2 = BatchId::from("b2");
        blobs.put_named(&blob_name(&b2), &raw).await.unwrap();
        assert!(other.of(&blobs, &b2, &FamilyId::from("F1")).await.is_err());
    }

    #[tokio::test]
    async fn a_book_sealed_before_a_key_rotation_is_read_with_the_old_key_kept() {
        let blobs = MemoryBlobs::default();
        let batch = BatchId::from("b1");
        Identities::new(&SigningOptions::new([7; 32]))
            .store(&blobs, &batch, book())
            .await
            .unwrap();
        let rotated = Identities::new(&SigningOptions::new([8; 32]).with_old_keys(vec![[7; 32]]));
        let i = rotated
            .of(&blobs, &batch, &FamilyId::from("F1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(i.full_name.as_deref(), Some("张三丰"));
        // A batch loaded after the rotation is sealed with the new key alone.
        let b2 = BatchId::from("b2");
        rotated.store(&blobs, &b2, book()).await.unwrap();
        assert!(Identities::new(&SigningOptions::new([8; 32]))
            .of(&blobs, &b2, &FamilyId::from("F1"))
            .await
            .unwrap()
            .is_some());
        assert!(Identities::new(&SigningOptions::new([7; 32]))
            .of(&blobs, &b2, &FamilyId::from("F1"))
            .await
            .is_err());
    }

    #[test]
    fn shown_masked_or_whole() {
        let i = &book()[&FamilyId::from("F1")];
        let m = IdentityShown::masked(i);
        assert_eq!(m.full_name.as_deref(), Some("张*丰"));
        assert_eq!(m.id_number.as_deref(), Some("110105********002X"));
        assert!(IdentityShown::whole(i).whole);
    }
}
