"""The API's routes, one module per resource (FastAPI's ``APIRouter``)."""
