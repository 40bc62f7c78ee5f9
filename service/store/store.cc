#include "service/store/store.h"

#include <future>

namespace snapconf {

absl::StatusOr<CommitResult> Store::Commit(WriteRequest request) {
  std::promise<absl::StatusOr<CommitResult>> outcome;
  auto future = outcome.get_future();
  CommitAsync(std::move(request), [&outcome](absl::StatusOr<CommitResult> result) {
    outcome.set_value(std::move(result));
  });
  return future.get();
}

void Store::CommitAsync(WriteRequest request, CommitCallback done) {
  std::move(done)(Commit(std::move(request)));
}

}  // namespace snapconf
