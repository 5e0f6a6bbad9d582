//! `ProjectService`: a seller's projects.

use cutx_platform::error::{FieldViolation, invalid_argument, invalid_field};
use cutx_platform::ids::ProjectId;
use cutx_proto::pb::{self, project_service_server::ProjectService};
use tonic::{Request, Response, Status};

use crate::Jobs;
use crate::entity::project;
use crate::service::DEFAULT_PAGE;
use cutx_platform::paging::{Page, PageQuery};

fn project_pb(p: project::Model) -> pb::Project {
    pb::Project {
        id: p.id,
        name: p.name,
        description: p.description,
        created_at: Some(cutx_platform::clock::to_timestamp(p.created_at)),
    }
}

#[tonic::async_trait]
impl ProjectService for Jobs {
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let pb::CreateProjectRequest { name, description } = request.into_inner();
        let name = name.trim();
        let mut violations = Vec::new();
        if !(1..=200).contains(&name.chars().count()) {
            violations.push(FieldViolation::new("name", "must be 1 to 200 characters"));
        }
        if description.chars().count() > 1000 {
            violations.push(FieldViolation::new("description", "must be at most 1000 characters"));
        }
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let project = self.store.create_project(caller, name, description.trim()).await?;
        Ok(Response::new(pb::CreateProjectResponse { project: Some(project_pb(project)) }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let pb::ListProjectsRequest { page_size, page_token, limit, offset } = request.into_inner();
        let page = Page::parse(PageQuery { page_size, page_token, limit, offset }, DEFAULT_PAGE)?;
        let rows = self.store.projects(caller, &page).await?;
        let next_page_token = page.next_token(rows.iter().map(|r| r.id.as_str()));
        Ok(Response::new(pb::ListProjectsResponse {
            projects: rows.into_iter().map(project_pb).collect(),
            next_page_token,
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let id: ProjectId = request.get_ref().id.parse().map_err(|_| invalid_field("id", "must be a project id"))?;
        let project = self
            .store
            .project(caller, id)
            .await?
            .ok_or_else(|| Status::not_found(format!("project {id} not found")))?;
        Ok(Response::new(pb::GetProjectResponse { project: Some(project_pb(project)) }))
    }

    async fn ingest_product(
        &self,
        request: Request<pb::IngestProductRequest>,
    ) -> Result<Response<pb::IngestProductResponse>, Status> {
        self.mesh.caller(&request)?;
        Err(Status::unimplemented("product ingestion (scrape jobs) is not served yet"))
    }
}
