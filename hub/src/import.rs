//! CSV/XLSX import (in progress by its owner).
