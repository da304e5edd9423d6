"""The loopback GitHub/GitLab, now at home in runner.demo.codehost (the demo uses
it too); re-exported here so the tests' ``from codehost import ...`` stands."""

from runner.demo.codehost import (
    GITHUB_LEGACY,
    GITLAB_ACCESS,
    START,
    CodeHostServer,
    CommentRecord,
    HttpError,
    RepoRecord,
    ReviewRecord,
    UserRecord,
)

__all__ = [
    "GITHUB_LEGACY",
    "GITLAB_ACCESS",
    "START",
    "CodeHostServer",
    "CommentRecord",
    "HttpError",
    "RepoRecord",
    "ReviewRecord",
    "UserRecord",
]
