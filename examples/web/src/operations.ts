import { graphql } from './gql';

/** What a row of the task list shows. */
export const TaskSummaryFragment = graphql(`
  fragment TaskSummary on OmniTask {
    id
    status
    statusMessage
    version
    changeCursor
    prompt
    mode
    aspectRatio
    durationSeconds
    createdAt
    updatedAt
  }
`);

/**
 * Everything the detail view shows; the live subscription asks for the same, so that each event
 * replaces what the page holds of its task as a whole.
 */
export const TaskDetailFragment = graphql(`
  fragment TaskDetail on OmniTask {
    ...TaskSummary
    modelName
    externalTaskId
    upstreamTaskId
    submittedAt
    completedAt
    referenceImages {
      index
      url
      type
      byteSize
    }
    elements {
      index
      elementId
    }
    referenceVideos {
      index
      url
      referType
      keepOriginalSound
    }
    videos {
      id
      url
      durationSeconds
      archived
    }
  }
`);

export const ViewerDocument = graphql(`
  query Viewer {
    viewer {
      tenant {
        id
        name
        monthlyVideoSecondsLimit
        maxConcurrentTasks
      }
      usage {
        succeededTasks
        failedTasks
        videoSeconds
        units
        byMode {
          mode
          tasks
          videoSeconds
          units
        }
      }
    }
  }
`);

export const TaskPageDocument = graphql(`
  query TaskPage($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {
    omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      edges {
        cursor
        node {
          ...TaskSummary
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`);

export const TaskDocument = graphql(`
  query Task($id: ID!) {
    omniTask(id: $id) {
      ...TaskDetail
    }
  }
`);

export const CreateOmniVideoDocument = graphql(`
  mutation CreateOmniVideo($input: CreateOmniVideoInput!) {
    createOmniVideo(input: $input) {
      __typename
      ... on CreateOmniVideoSuccess {
        task {
          ...TaskDetail
        }
      }
      ... on InvalidInputError {
        message
        issues {
          path
          message
        }
      }
      ... on QuotaExceededError {
        message
      }
      ... on RateLimitedError {
        message
        retryAfterSeconds
      }
      ... on UpstreamError {
        message
        code
        retryable
      }
    }
  }
`);

/**
 * Every change of every task of the tenant. With `after` (the changeCursor of the last event
 * handled), the gateway first replays the latest state of each task changed since, then goes on live.
 */
export const TaskUpdatesDocument = graphql(`
  subscription TaskUpdates($after: String) {
    omniTaskUpdated(after: $after) {
      ...TaskDetail
    }
  }
`);
