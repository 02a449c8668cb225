/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  fragment TaskSummary on OmniTask {\n    id\n    status\n    statusMessage\n    version\n    changeCursor\n    prompt\n    mode\n    aspectRatio\n    durationSeconds\n    createdAt\n    updatedAt\n  }\n": typeof types.TaskSummaryFragmentDoc,
    "\n  fragment TaskDetail on OmniTask {\n    ...TaskSummary\n    modelName\n    externalTaskId\n    upstreamTaskId\n    submittedAt\n    completedAt\n    referenceImages {\n      index\n      url\n      type\n      byteSize\n    }\n    elements {\n      index\n      elementId\n    }\n    referenceVideos {\n      index\n      url\n      referType\n      keepOriginalSound\n    }\n    videos {\n      id\n      url\n      durationSeconds\n      archived\n    }\n  }\n": typeof types.TaskDetailFragmentDoc,
    "\n  query Viewer {\n    viewer {\n      tenant {\n        id\n        name\n        monthlyVideoSecondsLimit\n        maxConcurrentTasks\n      }\n      usage {\n        succeededTasks\n        failedTasks\n        videoSeconds\n        units\n        byMode {\n          mode\n          tasks\n          videoSeconds\n          units\n        }\n      }\n    }\n  }\n": typeof types.ViewerDocument,
    "\n  query TaskPage($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {\n    omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {\n      edges {\n        cursor\n        node {\n          ...TaskSummary\n        }\n      }\n      pageInfo {\n        hasNextPage\n        hasPreviousPage\n        startCursor\n        endCursor\n      }\n    }\n  }\n": typeof types.TaskPageDocument,
    "\n  query Task($id: ID!) {\n    omniTask(id: $id) {\n      ...TaskDetail\n    }\n  }\n": typeof types.TaskDocument,
    "\n  mutation CreateOmniVideo($input: CreateOmniVideoInput!) {\n    createOmniVideo(input: $input) {\n      __typename\n      ... on CreateOmniVideoSuccess {\n        task {\n          ...TaskDetail\n        }\n      }\n      ... on InvalidInputError {\n        message\n        issues {\n          path\n          message\n        }\n      }\n      ... on QuotaExceededError {\n        message\n      }\n      ... on RateLimitedError {\n        message\n        retryAfterSeconds\n      }\n      ... on UpstreamError {\n        message\n        code\n        retryable\n      }\n    }\n  }\n": typeof types.CreateOmniVideoDocument,
    "\n  subscription TaskUpdates($after: String) {\n    omniTaskUpdated(after: $after) {\n      ...TaskDetail\n    }\n  }\n": typeof types.TaskUpdatesDocument,
};
const documents: Documents = {
    "\n  fragment TaskSummary on OmniTask {\n    id\n    status\n    statusMessage\n    version\n    changeCursor\n    prompt\n    mode\n    aspectRatio\n    durationSeconds\n    createdAt\n    updatedAt\n  }\n": types.TaskSummaryFragmentDoc,
    "\n  fragment TaskDetail on OmniTask {\n    ...TaskSummary\n    modelName\n    externalTaskId\n    upstreamTaskId\n    submittedAt\n    completedAt\n    referenceImages {\n      index\n      url\n      type\n      byteSize\n    }\n    elements {\n      index\n      elementId\n    }\n    referenceVideos {\n      index\n      url\n      referType\n      keepOriginalSound\n    }\n    videos {\n      id\n      url\n      durationSeconds\n      archived\n    }\n  }\n": types.TaskDetailFragmentDoc,
    "\n  query Viewer {\n    viewer {\n      tenant {\n        id\n        name\n        monthlyVideoSecondsLimit\n        maxConcurrentTasks\n      }\n      usage {\n        succeededTasks\n        failedTasks\n        videoSeconds\n        units\n        byMode {\n          mode\n          tasks\n          videoSeconds\n          units\n        }\n      }\n    }\n  }\n": types.ViewerDocument,
    "\n  query TaskPage($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {\n    omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {\n      edges {\n        cursor\n        node {\n          ...TaskSummary\n        }\n      }\n      pageInfo {\n        hasNextPage\n        hasPreviousPage\n        startCursor\n        endCursor\n      }\n    }\n  }\n": types.TaskPageDocument,
    "\n  query Task($id: ID!) {\n    omniTask(id: $id) {\n      ...TaskDetail\n    }\n  }\n": types.TaskDocument,
    "\n  mutation CreateOmniVideo($input: CreateOmniVideoInput!) {\n    createOmniVideo(input: $input) {\n      __typename\n      ... on CreateOmniVideoSuccess {\n        task {\n          ...TaskDetail\n        }\n      }\n      ... on InvalidInputError {\n        message\n        issues {\n          path\n          message\n        }\n      }\n      ... on QuotaExceededError {\n        message\n      }\n      ... on RateLimitedError {\n        message\n        retryAfterSeconds\n      }\n      ... on UpstreamError {\n        message\n        code\n        retryable\n      }\n    }\n  }\n": types.CreateOmniVideoDocument,
    "\n  subscription TaskUpdates($after: String) {\n    omniTaskUpdated(after: $after) {\n      ...TaskDetail\n    }\n  }\n": types.TaskUpdatesDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment TaskSummary on OmniTask {\n    id\n    status\n    statusMessage\n    version\n    changeCursor\n    prompt\n    mode\n    aspectRatio\n    durationSeconds\n    createdAt\n    updatedAt\n  }\n"): (typeof documents)["\n  fragment TaskSummary on OmniTask {\n    id\n    status\n    statusMessage\n    version\n    changeCursor\n    prompt\n    mode\n    aspectRatio\n    durationSeconds\n    createdAt\n    updatedAt\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment TaskDetail on OmniTask {\n    ...TaskSummary\n    modelName\n    externalTaskId\n    upstreamTaskId\n    submittedAt\n    completedAt\n    referenceImages {\n      index\n      url\n      type\n      byteSize\n    }\n    elements {\n      index\n      elementId\n    }\n    referenceVideos {\n      index\n      url\n      referType\n      keepOriginalSound\n    }\n    videos {\n      id\n      url\n      durationSeconds\n      archived\n    }\n  }\n"): (typeof documents)["\n  fragment TaskDetail on OmniTask {\n    ...TaskSummary\n    modelName\n    externalTaskId\n    upstreamTaskId\n    submittedAt\n    completedAt\n    referenceImages {\n      index\n      url\n      type\n      byteSize\n    }\n    elements {\n      index\n      elementId\n    }\n    referenceVideos {\n      index\n      url\n      referType\n      keepOriginalSound\n    }\n    videos {\n      id\n      url\n      durationSeconds\n      archived\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Viewer {\n    viewer {\n      tenant {\n        id\n        name\n        monthlyVideoSecondsLimit\n        maxConcurrentTasks\n      }\n      usage {\n        succeededTasks\n        failedTasks\n        videoSeconds\n        units\n        byMode {\n          mode\n          tasks\n          videoSeconds\n          units\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Viewer {\n    viewer {\n      tenant {\n        id\n        name\n        monthlyVideoSecondsLimit\n        maxConcurrentTasks\n      }\n      usage {\n        succeededTasks\n        failedTasks\n        videoSeconds\n        units\n        byMode {\n          mode\n          tasks\n          videoSeconds\n          units\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query TaskPage($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {\n    omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {\n      edges {\n        cursor\n        node {\n          ...TaskSummary\n        }\n      }\n      pageInfo {\n        hasNextPage\n        hasPreviousPage\n        startCursor\n        endCursor\n      }\n    }\n  }\n"): (typeof documents)["\n  query TaskPage($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {\n    omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {\n      edges {\n        cursor\n        node {\n          ...TaskSummary\n        }\n      }\n      pageInfo {\n        hasNextPage\n        hasPreviousPage\n        startCursor\n        endCursor\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Task($id: ID!) {\n    omniTask(id: $id) {\n      ...TaskDetail\n    }\n  }\n"): (typeof documents)["\n  query Task($id: ID!) {\n    omniTask(id: $id) {\n      ...TaskDetail\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateOmniVideo($input: CreateOmniVideoInput!) {\n    createOmniVideo(input: $input) {\n      __typename\n      ... on CreateOmniVideoSuccess {\n        task {\n          ...TaskDetail\n        }\n      }\n      ... on InvalidInputError {\n        message\n        issues {\n          path\n          message\n        }\n      }\n      ... on QuotaExceededError {\n        message\n      }\n      ... on RateLimitedError {\n        message\n        retryAfterSeconds\n      }\n      ... on UpstreamError {\n        message\n        code\n        retryable\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateOmniVideo($input: CreateOmniVideoInput!) {\n    createOmniVideo(input: $input) {\n      __typename\n      ... on CreateOmniVideoSuccess {\n        task {\n          ...TaskDetail\n        }\n      }\n      ... on InvalidInputError {\n        message\n        issues {\n          path\n          message\n        }\n      }\n      ... on QuotaExceededError {\n        message\n      }\n      ... on RateLimitedError {\n        message\n        retryAfterSeconds\n      }\n      ... on UpstreamError {\n        message\n        code\n        retryable\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription TaskUpdates($after: String) {\n    omniTaskUpdated(after: $after) {\n      ...TaskDetail\n    }\n  }\n"): (typeof documents)["\n  subscription TaskUpdates($after: String) {\n    omniTaskUpdated(after: $after) {\n      ...TaskDetail\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;