/**
 * A large tool catalog for the tool-search suites: 5 backends modelled on real MCP servers
 * (GitHub, Slack, Jira, PostgreSQL, a filesystem), 210 tools with realistic names, descriptions
 * and parameters, served by real SDK backends (two legacy v1, three modern v2), plus queries a
 * user would type with the tool that should come out in the top 3.
 */
import { z } from "zod";
import { legacyBackend, modernBackend, type TestBackend } from "./_aggregate_backends.ts";

/** One tool of the fixture: name, description, parameter names (all strings). */
export type FixtureTool = [name: string, description: string, params: string[]];

const R = ["owner", "repo"];

/** The catalog, per backend. */
export const CATALOG: Record<string, FixtureTool[]> = {
  github: [
    ["list_issues", "List issues in a GitHub repository, filtered by state, labels or assignee.", [
      ...R,
      "state",
      "labels",
    ]],
    ["get_issue", "Get one issue of a repository by its number, with body and labels.", [
      ...R,
      "issue_number",
    ]],
    ["create_issue", "Open a new issue in a repository with a title, body, labels and assignees.", [
      ...R,
      "title",
      "body",
    ]],
    ["update_issue", "Edit an issue's title, body, state, labels or assignees.", [
      ...R,
      "issue_number",
    ]],
    [
      "search_issues",
      "Search issues and pull requests across GitHub with the issue search syntax.",
      ["q"],
    ],
    ["add_issue_comment", "Add a comment to an issue or pull request.", [
      ...R,
      "issue_number",
      "body",
    ]],
    ["list_issue_comments", "List the comments of an issue.", [...R, "issue_number"]],
    ["lock_issue", "Lock the conversation of an issue so only collaborators can comment.", [
      ...R,
      "issue_number",
    ]],
    ["list_pull_requests", "List pull requests of a repository by state, head or base branch.", [
      ...R,
      "state",
    ]],
    ["get_pull_request", "Get the details of one pull request.", [...R, "pull_number"]],
    ["create_pull_request", "Open a pull request from a head branch into a base branch.", [
      ...R,
      "head",
      "base",
      "title",
    ]],
    ["merge_pull_request", "Merge a pull request with the merge, squash or rebase method.", [
      ...R,
      "pull_number",
      "merge_method",
    ]],
    [
      "update_pull_request_branch",
      "Update a pull request's branch with the latest changes of its base.",
      [...R, "pull_number"],
    ],
    ["get_pull_request_diff", "Get the unified diff of a pull request.", [...R, "pull_number"]],
    ["get_pull_request_files", "List the files changed by a pull request.", [...R, "pull_number"]],
    [
      "create_pull_request_review",
      "Submit a review on a pull request: approve, request changes or comment.",
      [...R, "pull_number", "event"],
    ],
    ["request_reviewers", "Request reviews from users or teams on a pull request.", [
      ...R,
      "pull_number",
      "reviewers",
    ]],
    ["list_pull_request_reviews", "List the reviews submitted on a pull request.", [
      ...R,
      "pull_number",
    ]],
    ["create_repository", "Create a new GitHub repository for the user or an organization.", [
      "name",
      "private",
    ]],
    ["fork_repository", "Fork a repository into your account or an organization.", [
      ...R,
      "organization",
    ]],
    ["search_repositories", "Search GitHub repositories by keywords, topics, language and stars.", [
      "query",
    ]],
    [
      "get_file_contents",
      "Get a file or directory from a GitHub repository at a branch, tag or commit.",
      [...R, "path", "ref"],
    ],
    ["create_or_update_file", "Create or update one file in a GitHub repository with a commit.", [
      ...R,
      "path",
      "content",
      "message",
    ]],
    ["delete_repository_file", "Delete a file from a GitHub repository with a commit.", [
      ...R,
      "path",
      "message",
    ]],
    ["push_files", "Commit several files to a branch in one push.", [...R, "branch", "files"]],
    ["list_branches", "List the branches of a repository.", R],
    ["create_branch", "Create a new branch from another branch or a commit.", [
      ...R,
      "branch",
      "from_branch",
    ]],
    ["delete_branch", "Delete a branch of a repository.", [...R, "branch"]],
    ["get_branch_protection", "Get the protection rules of a branch.", [...R, "branch"]],
    ["list_commits", "List the commits of a branch, newest first.", [...R, "sha"]],
    ["get_commit", "Get one commit with its diff and stats.", [...R, "sha"]],
    ["list_tags", "List the git tags of a repository.", R],
    ["list_releases", "List the releases of a repository.", R],
    ["get_latest_release", "Get the latest published release of a repository.", R],
    ["create_release", "Publish a release for a tag, with release notes.", [
      ...R,
      "tag_name",
      "body",
    ]],
    ["list_workflows", "List the GitHub Actions workflows of a repository.", R],
    ["list_workflow_runs", "List the runs of a GitHub Actions workflow.", [...R, "workflow_id"]],
    ["run_workflow", "Trigger a workflow_dispatch run of a GitHub Actions workflow.", [
      ...R,
      "workflow_id",
      "ref",
    ]],
    ["rerun_failed_jobs", "Re-run the failed jobs of a workflow run.", [...R, "run_id"]],
    ["cancel_workflow_run", "Cancel a workflow run in progress.", [...R, "run_id"]],
    ["get_job_logs", "Download the logs of a GitHub Actions job.", [...R, "job_id"]],
    ["search_code", "Search code across GitHub repositories.", ["q"]],
    ["get_me", "Get the details of the authenticated GitHub user.", []],
    ["search_users", "Search GitHub users by name, login or location.", ["q"]],
    ["list_notifications", "List your unread GitHub notifications.", ["all"]],
    ["mark_notifications_read", "Mark notifications as read.", ["last_read_at"]],
    ["list_labels", "List the labels of a repository.", R],
    ["create_label", "Create a label with a name and color in a repository.", [
      ...R,
      "name",
      "color",
    ]],
    ["create_gist", "Create a gist from one or more files.", ["files", "public"]],
    ["list_gists", "List the gists of a user.", ["username"]],
    ["list_code_scanning_alerts", "List code scanning alerts of a repository.", R],
    ["list_dependabot_alerts", "List Dependabot alerts about vulnerable dependencies.", R],
    [
      "list_secret_scanning_alerts",
      "List secret scanning alerts: leaked credentials found in a repository.",
      R,
    ],
    ["list_discussions", "List the discussions of a repository.", R],
    ["star_repository", "Star a repository.", R],
    ["list_milestones", "List the milestones of a repository.", R],
  ],
  slack: [
    ["send_message", "Post a message to a Slack channel.", ["channel", "text"]],
    ["reply_in_thread", "Reply to a message in its thread.", ["channel", "thread_ts", "text"]],
    ["update_message", "Edit a message you posted.", ["channel", "ts", "text"]],
    ["delete_message", "Delete a message you posted.", ["channel", "ts"]],
    ["schedule_message", "Schedule a message to be posted to a channel later.", [
      "channel",
      "text",
      "post_at",
    ]],
    ["list_channels", "List public and private channels of the workspace.", ["types"]],
    ["create_channel", "Create a new public or private channel.", ["name", "is_private"]],
    ["archive_channel", "Archive a channel.", ["channel"]],
    ["rename_channel", "Rename a channel.", ["channel", "name"]],
    ["join_channel", "Join a public channel.", ["channel"]],
    ["leave_channel", "Leave a channel.", ["channel"]],
    ["invite_to_channel", "Invite users to a channel.", ["channel", "users"]],
    ["remove_from_channel", "Remove a user from a channel.", ["channel", "user"]],
    ["get_channel_history", "Read the recent messages of a channel.", ["channel", "limit"]],
    ["get_thread_replies", "Read the replies of a thread.", ["channel", "ts"]],
    ["search_messages", "Search Slack messages by keywords, channel, author or date.", ["query"]],
    ["search_slack_files", "Search files shared in Slack by name or content.", ["query"]],
    ["upload_file", "Upload a file to Slack and share it in channels.", [
      "channels",
      "filename",
      "content",
    ]],
    ["add_reaction", "Add an emoji reaction to a message.", ["channel", "timestamp", "name"]],
    ["remove_reaction", "Remove an emoji reaction from a message.", [
      "channel",
      "timestamp",
      "name",
    ]],
    ["pin_message", "Pin a message to a channel.", ["channel", "ts"]],
    ["unpin_message", "Unpin a message from a channel.", ["channel", "ts"]],
    ["list_pins", "List the pinned items of a channel.", ["channel"]],
    ["set_channel_topic", "Set the topic of a channel.", ["channel", "topic"]],
    ["set_channel_purpose", "Set the purpose (description) of a channel.", ["channel", "purpose"]],
    ["list_users", "List the members of the workspace.", ["limit"]],
    ["get_user_profile", "Get a user's profile: name, title, email, time zone.", ["user"]],
    ["lookup_user_by_email", "Find a Slack user by email address.", ["email"]],
    ["set_status", "Set your Slack status text and emoji.", ["status_text", "status_emoji"]],
    ["set_presence", "Set your presence to auto or away.", ["presence"]],
    ["open_direct_message", "Open a direct message conversation with one or more users.", [
      "users",
    ]],
    ["create_reminder", "Create a reminder for yourself or another user.", ["text", "time"]],
    ["list_reminders", "List your reminders.", []],
    ["delete_reminder", "Delete a reminder.", ["reminder"]],
    ["add_bookmark", "Add a bookmark link to a channel.", ["channel", "title", "link"]],
    ["list_user_groups", "List the user groups of the workspace.", []],
    ["create_canvas", "Create a canvas document.", ["title", "content"]],
    ["get_permalink", "Get a permanent link to a message.", ["channel", "message_ts"]],
    ["mark_channel_read", "Move the read cursor of a channel.", ["channel", "ts"]],
    ["list_emoji", "List the custom emoji of the workspace.", []],
  ],
  jira: [
    ["create_issue", "Create a Jira issue (story, bug or task) in a project.", [
      "project",
      "summary",
      "issue_type",
    ]],
    ["get_issue", "Get a Jira issue by key with its fields.", ["issue_key"]],
    ["update_issue", "Update fields of a Jira issue.", ["issue_key", "fields"]],
    ["delete_issue", "Delete a Jira issue.", ["issue_key"]],
    ["search_issues_jql", "Search Jira issues with a JQL query.", ["jql"]],
    [
      "transition_issue",
      "Move a Jira issue to another workflow status such as In Progress or Done.",
      ["issue_key", "transition"],
    ],
    ["assign_issue", "Assign a Jira issue to a user.", ["issue_key", "assignee"]],
    ["add_comment", "Add a comment to a Jira issue.", ["issue_key", "body"]],
    ["list_comments", "List the comments of a Jira issue.", ["issue_key"]],
    ["add_worklog", "Log time spent working on a Jira issue.", ["issue_key", "time_spent"]],
    ["add_attachment", "Attach a file to a Jira issue.", ["issue_key", "file"]],
    ["link_issues", "Link two Jira issues (blocks, relates to, duplicates).", [
      "inward",
      "outward",
      "type",
    ]],
    ["list_projects", "List the Jira projects you can see.", []],
    ["get_project", "Get a Jira project by key.", ["project"]],
    ["create_project", "Create a Jira project.", ["key", "name"]],
    ["list_boards", "List the Scrum and Kanban boards.", ["project"]],
    ["get_board", "Get a board's configuration.", ["board_id"]],
    ["list_sprints", "List the sprints of a Scrum board.", ["board_id", "state"]],
    ["create_sprint", "Create a sprint on a board.", ["board_id", "name"]],
    ["start_sprint", "Start a sprint with start and end dates.", ["sprint_id"]],
    ["complete_sprint", "Complete (close) an active sprint.", ["sprint_id"]],
    ["move_issues_to_sprint", "Move issues into a sprint.", ["sprint_id", "issues"]],
    ["get_sprint_issues", "List the issues in a sprint.", ["sprint_id"]],
    ["list_epics", "List the epics of a board.", ["board_id"]],
    ["create_epic", "Create an epic.", ["project", "summary"]],
    ["add_issues_to_epic", "Add issues to an epic.", ["epic_key", "issues"]],
    ["list_versions", "List the versions (releases) of a project.", ["project"]],
    ["create_version", "Create a release version in a Jira project.", ["project", "name"]],
    ["release_version", "Mark a project version as released.", ["version_id"]],
    ["list_components", "List the components of a project.", ["project"]],
    ["list_issue_types", "List the issue types available in a project.", ["project"]],
    ["list_priorities", "List the priorities of issues.", []],
    ["get_transitions", "List the transitions available for an issue in its workflow.", [
      "issue_key",
    ]],
    ["add_watcher", "Add a watcher to an issue.", ["issue_key", "user"]],
    ["remove_watcher", "Remove a watcher from an issue.", ["issue_key", "user"]],
    ["get_user", "Get a Jira user by account id.", ["account_id"]],
    ["search_users", "Search Jira users by name or email.", ["query"]],
    ["list_filters", "List your saved Jira filters.", []],
    ["create_filter", "Save a JQL query as a filter.", ["name", "jql"]],
    ["get_changelog", "Get the change history of a Jira issue.", ["issue_key"]],
  ],
  postgres: [
    ["run_query", "Run a read-only SQL query and return the rows.", ["sql"]],
    ["execute_statement", "Execute a SQL statement that changes data (INSERT, UPDATE, DELETE).", [
      "sql",
    ]],
    ["explain_query", "Show the execution plan of a SQL query with EXPLAIN ANALYZE.", ["sql"]],
    ["list_schemas", "List the schemas of the database.", []],
    ["list_tables", "List the tables of a schema with their row estimates.", ["schema"]],
    ["describe_table", "Show a table's columns, types, defaults and constraints.", ["table"]],
    ["list_indexes", "List the indexes of a table.", ["table"]],
    ["create_index", "Create an index on table columns.", ["table", "columns"]],
    ["drop_index", "Drop an index.", ["index"]],
    ["list_views", "List the views of a schema.", ["schema"]],
    ["create_view", "Create a view from a SELECT query.", ["name", "sql"]],
    ["list_functions", "List the stored functions and procedures.", ["schema"]],
    ["list_extensions", "List the installed PostgreSQL extensions.", []],
    ["install_extension", "Install a PostgreSQL extension such as pgvector.", ["name"]],
    ["list_roles", "List the database roles and their attributes.", []],
    ["create_role", "Create a database role (user) with a password.", ["name", "password"]],
    ["grant_privileges", "Grant privileges on a table or schema to a role.", [
      "role",
      "privileges",
      "object",
    ]],
    ["revoke_privileges", "Revoke privileges from a role.", ["role", "privileges", "object"]],
    ["list_active_queries", "Show the running queries from pg_stat_activity.", []],
    ["cancel_query", "Cancel a running query by its process id.", ["pid"]],
    ["terminate_backend", "Terminate a database connection by its process id.", ["pid"]],
    ["get_table_size", "Size of a table and its indexes on disk.", ["table"]],
    ["get_database_size", "Total size of the database on disk.", []],
    ["vacuum_table", "Run VACUUM on a table to reclaim space and refresh statistics.", [
      "table",
      "full",
    ]],
    ["analyze_table", "Collect planner statistics of a table (ANALYZE).", ["table"]],
    ["list_locks", "Show the locks held and awaited by sessions.", []],
    ["list_slow_queries", "The slowest statements from pg_stat_statements.", ["limit"]],
    ["create_table", "Create a table with columns and a primary key.", ["name", "columns"]],
    ["add_column", "Add a column to an existing table (ALTER TABLE).", ["table", "column", "type"]],
    ["drop_table", "Drop a table.", ["table"]],
    ["truncate_table", "Remove every row of a table at once.", ["table"]],
    ["export_csv", "Export a table or query result as CSV.", ["sql"]],
    ["import_csv", "Load CSV rows into a table.", ["table", "csv"]],
    ["list_replication_slots", "List the replication slots and their lag.", []],
    ["backup_database", "Start a logical backup (pg_dump) of the database.", ["format"]],
  ],
  files: [
    ["read_file", "Read the complete contents of a text file.", ["path"]],
    ["read_multiple_files", "Read several files at once.", ["paths"]],
    ["write_file", "Create a new file or overwrite a file with new content.", ["path", "content"]],
    ["append_to_file", "Append text to the end of a file.", ["path", "content"]],
    ["edit_file", "Make line-based edits to a text file and return a git-style diff.", [
      "path",
      "edits",
    ]],
    ["delete_file", "Delete a file.", ["path"]],
    ["move_file", "Move or rename a file or directory.", ["source", "destination"]],
    ["copy_file", "Copy a file to another path.", ["source", "destination"]],
    ["create_directory", "Create a directory, with its parents.", ["path"]],
    ["list_directory", "List the files and directories in a path.", ["path"]],
    ["directory_tree", "A recursive tree of a directory as JSON.", ["path"]],
    ["find_files", "Find files whose names match a glob pattern.", ["path", "pattern"]],
    ["grep_files", "Search the contents of files for a regular expression.", ["path", "regex"]],
    ["get_file_info", "Size, modification time and permissions of a file.", ["path"]],
    ["list_allowed_directories", "List the directories this server may access.", []],
    ["compute_checksum", "Compute the SHA-256 checksum of a file.", ["path"]],
    ["compress_files", "Create a zip archive of files.", ["paths", "archive"]],
    ["extract_archive", "Extract a zip or tar archive into a directory.", [
      "archive",
      "destination",
    ]],
    ["change_permissions", "Change the permissions of a file (chmod).", ["path", "mode"]],
    ["change_owner", "Change the owner of a file (chown).", ["path", "owner"]],
    ["create_symlink", "Create a symbolic link.", ["target", "link"]],
    ["read_image", "Read an image file and return it as base64.", ["path"]],
    ["watch_directory", "Watch a directory for changes.", ["path"]],
    ["diff_files", "Show the differences between two files.", ["a", "b"]],
    ["find_duplicates", "Find files with identical content.", ["path"]],
    ["disk_usage", "Disk space used by a directory.", ["path"]],
    ["tail_file", "Show the last lines of a log file.", ["path", "lines"]],
    ["head_file", "Show the first lines of a file.", ["path", "lines"]],
    ["count_lines", "Count the lines, words and bytes of a file.", ["path"]],
    ["replace_in_files", "Find and replace text across many files.", ["path", "find", "replace"]],
    ["convert_encoding", "Convert a text file to another character encoding.", [
      "path",
      "encoding",
    ]],
    ["touch_file", "Create an empty file or update its modification time.", ["path"]],
    ["read_pdf_text", "Extract the text of a PDF document.", ["path"]],
    ["list_recent_files", "List the files changed recently.", ["path", "since"]],
    ["trash_file", "Move a file to the trash instead of deleting it.", ["path"]],
  ],
};

/** Queries a user would type, and the tool (exposed name) that must rank in the top 3. */
export const SEARCH_QUERIES: [query: string, expected: string][] = [
  ["merge a pull request", "github__merge_pull_request"],
  ["post a message to a slack channel", "slack__send_message"],
  ["move a jira issue to done", "jira__transition_issue"],
  ["run a sql query", "postgres__run_query"],
  ["read the contents of a file", "files__read_file"],
  ["search code across repositories", "github__search_code"],
  ["find a slack user by email", "slack__lookup_user_by_email"],
  ["log time spent on an issue", "jira__add_worklog"],
  ["show the query execution plan", "postgres__explain_query"],
  ["rename a file", "files__move_file"],
  ["trigger a github actions workflow", "github__run_workflow"],
  ["add an emoji reaction", "slack__add_reaction"],
  ["list the sprints of a board", "jira__list_sprints"],
  ["vacuum a table to reclaim space", "postgres__vacuum_table"],
  ["search file contents with a regular expression", "files__grep_files"],
  ["publish a release with notes", "github__create_release"],
  ["schedule a message for later", "slack__schedule_message"],
  ["link two jira issues", "jira__link_issues"],
  ["columns and types of a table", "postgres__describe_table"],
  ["extract a zip archive", "files__extract_archive"],
  ["approve a pull request review", "github__create_pull_request_review"],
  ["cancel a running query", "postgres__cancel_query"],
  ["set my slack status emoji", "slack__set_status"],
  ["fork a repository", "github__fork_repository"],
  ["leaked credentials secret scanning", "github__list_secret_scanning_alerts"],
  ["last lines of a log file", "files__tail_file"],
];

/** The number of tools in {@linkcode CATALOG}. */
export const CATALOG_SIZE = Object.values(CATALOG).reduce((n, tools) => n + tools.length, 0);

/** Backends that were served a `tools/call`, with the call's name and arguments. */
export const catalogCalls: string[] = [];

/**
 * Serves the catalog: github and jira on the v1 SDK (legacy era), slack, postgres and files on
 * the v2 SDK (modern era). Every tool answers `<backend>:<tool>:<arguments as JSON>`.
 */
export function startCatalogBackends(): Record<string, TestBackend> {
  const legacy = new Set(["github", "jira"]);
  return Object.fromEntries(
    Object.entries(CATALOG).map(([backend, tools]) => {
      const v1 = legacy.has(backend);
      const setup = (s: any) => {
        for (const [name, description, params] of tools) {
          const shape = Object.fromEntries(params.map((p) => [p, z.string().optional()]));
          s.registerTool(
            name,
            { description, inputSchema: v1 ? shape : z.object(shape) },
            (args: unknown) => {
              const text = `${backend}:${name}:${JSON.stringify(args)}`;
              catalogCalls.push(text);
              return { content: [{ type: "text", text }] };
            },
          );
        }
      };
      return [backend, v1 ? legacyBackend(backend, setup) : modernBackend(backend, setup)];
    }),
  );
}
