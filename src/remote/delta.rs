//! Delta enumeration (`/root/delta` or a folder's `/delta`): one round follows every `@odata.nextLink` until the
//! `@odata.deltaLink`, deduplicates items by id (the last occurrence wins), and maps `410 Gone` to
//! [`GraphError::ResyncRequired`] carrying the service's restart `Location`.

use std::collections::HashMap;

use reqwest::Method;

use super::error::GraphError;
use super::graph::GraphClient;
use super::http::{ApiRequest, UrlKind};
use super::models::{DriveItem, Page};
use super::paths::item_resource;

/// Where a delta round starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaStart {
    /// Enumerate everything under `folder_id` (`None` = the drive root).
    Full { folder_id: Option<String> },
    /// No items, just a deltaLink for "from now on" (`token=latest`).
    Latest { folder_id: Option<String> },
    /// A stored `@odata.deltaLink` (or a resync `Location`), used verbatim.
    Link(String),
}

/// The outcome of one complete round.
#[derive(Clone, Debug, Default)]
pub struct DeltaRound {
    /// Changed items, one entry per id (its last state in the round), in the order of last occurrence.
    pub items: Vec<DriveItem>,
    /// Store this and pass it back as [`DeltaStart::Link`] next time.
    pub delta_link: String,
    /// Pages fetched in this round.
    pub pages: usize,
}

impl GraphClient {
    /// The first-page URL of a full enumeration of `folder_id` (`None` = the drive root).
    pub fn delta_first_url(&self, folder_id: Option<&str>) -> String {
        match folder_id {
            Some(id) => self.url(&format!("{}/delta", item_resource(id))),
            None => self.url("/me/drive/root/delta"),
        }
    }

    /// One delta page at `url` (a first-page URL, a nextLink or a deltaLink).
    pub async fn delta_page(&self, url: &str) -> Result<Page<DriveItem>, GraphError> {
        self.call_json(&ApiRequest::new(Method::GET, url, UrlKind::Graph)).await
    }

    /// Runs a whole round from `start`. `$top` is not sent (a Personal bug repeated pages with it).
    pub async fn delta(&self, start: DeltaStart) -> Result<DeltaRound, GraphError> {
        let first = match start {
            DeltaStart::Full { folder_id } => self.delta_first_url(folder_id.as_deref()),
            DeltaStart::Latest { folder_id } => format!("{}?token=latest", self.delta_first_url(folder_id.as_deref())),
            DeltaStart::Link(link) => link,
        };
        let mut items = Vec::new();
        let mut url = first;
        let mut pages = 0;
        loop {
            let page = self.delta_page(&url).await?;
            pages += 1;
            items.extend(page.value);
            match (page.next_link, page.delta_link) {
                (Some(next), _) if next == url => {
                    return Err(GraphError::Decode(
                        "delta returned the same @odata.nextLink twice; refusing to loop".into(),
                    ))
                }
                (Some(next), _) => url = next,
                (None, Some(delta_link)) => {
                    return Ok(DeltaRound {
                        items: dedup_last_wins(items),
                        delta_link,
                        pages,
                    })
                }
                (None, None) => {
                    return Err(GraphError::Decode(
                        "delta page has neither @odata.nextLink nor @odata.deltaLink".into(),
                    ))
                }
            }
        }
    }

    /// Restarts enumeration after [`GraphError::ResyncRequired`]: from its `location` when given, else a full
    /// enumeration of the drive root.
    pub async fn delta_resync(&self, location: Option<&str>) -> Result<DeltaRound, GraphError> {
        match location {
            Some(loc) => self.delta(DeltaStart::Link(loc.to_string())).await,
            None => self.delta(DeltaStart::Full { folder_id: None }).await,
        }
    }
}

/// Keeps only the last occurrence of each id, at the position of that last occurrence.
pub fn dedup_last_wins(items: Vec<DriveItem>) -> Vec<DriveItem> {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(item.id.clone(), i);
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| last.get(&item.id) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, name: &str) -> DriveItem {
        DriveItem {
            id: id.into(),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn last_occurrence_wins_in_its_position() {
        let out = dedup_last_wins(vec![item("a", "a1"), item("b", "b1"), item("a", "a2"), item("c", "c1")]);
        let got: Vec<_> = out.iter().map(|i| i.name.clone().unwrap()).collect();
        assert_eq!(got, vec!["b1", "a2", "c1"]);
    }
}
