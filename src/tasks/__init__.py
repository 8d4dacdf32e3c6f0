"""Tasks, by job (lower modules first; none imports a higher one):

metrics   the metrics, each with its declared direction
task      `Task` (task.json facts + config) and where its raw files are
readers   raw tables read as text (CSV, JSON, JSON lines), joins
splits    public/private split rules (random, stratified, time, group, official test)
cache     the prepared-task cache (manifest, fingerprint)
registry  task folders + conf/task_overrides/ -> `Task`; suites
prepare   raw files -> public/ + private/ (the cached preparation)
grading   submission.csv vs private answers -> score (or None: invalid)
rating    score -> leaderboard position with a bootstrap interval, medals
"""

from src.tasks.grading import Grade, grade
from src.tasks.metrics import Metric, get_metric, metric_names
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.rating import Rating, bootstrap_scores, rate
from src.tasks.registry import Task, load_suite, load_task

__all__ = [
    "Grade",
    "Metric",
    "PreparedTask",
    "Rating",
    "Task",
    "bootstrap_scores",
    "get_metric",
    "grade",
    "load_suite",
    "load_task",
    "metric_names",
    "prepare_task",
    "rate",
]
