function [loss, g, forward] = xor_gradients(theta, X, y, convention)
% XOR_GRADIENTS  The logged MSE of each of a batch of B states and the exact gradient
% of the convention's loss ('mse', or 'half-sse': 0.5*sum((A2 - y).^2), twice the MSE's
% gradient for 4 samples) with respect to the parameters, by hand backprop.
%
% theta is (B, 4H+1): each row one state's W1 (2,H), b1 (1,H), W2 (H,1), b2, each row
% by row (the exchange format's order); g comes back the same way. The batch is the
% first axis of every array, the samples the second, the hidden units the third and the
% inputs the fourth, so one call serves one training state (B = 1) and 20000 recorded
% ones alike, and the flat rows need no reordering: a row of W1 is H consecutive
% numbers. Broadcasting is MATLAB's implicit expansion (R2016b and newer).
[n, d] = size(X);
B = size(theta, 1);
H = (size(theta, 2) - 1) / (d + 2);
X4 = reshape(X, 1, n, 1, d);                          % X(s, i) at (1, s, 1, i)
W1 = reshape(theta(:, 1:d*H), B, 1, H, d);            % W1(i, j) at (b, 1, j, i)
b1 = reshape(theta(:, d*H+1:(d+1)*H), B, 1, H);
W2 = reshape(theta(:, (d+1)*H+1:(d+2)*H), B, 1, H);   % W2(j) along the hidden axis
b2 = theta(:, end);

Z1 = sum(X4 .* W1, 4) + b1;           % (B, n, H)
A1 = 1 ./ (1 + exp(-Z1));             dA1_dZ1 = A1 .* (1 - A1);
Z2 = sum(A1 .* W2, 3) + b2;           % (B, n)
A2 = 1 ./ (1 + exp(-Z2));             dA2_dZ2 = A2 .* (1 - A2);
err = A2 - reshape(y, 1, n);
loss = sum(err .* err, 2) / n;

if strcmp(convention, 'mse')
    out_scale = 2 / n;                % d mean(err.^2) / dA2 = 2 err / n
else
    out_scale = 1;                    % d 0.5 sum(err.^2) / dA2 = err
end
dZ2 = out_scale * err .* dA2_dZ2;
dZ1 = dZ2 .* W2 .* dA1_dZ1;           % Z2 = A1 W2 + b2: dZ2/dA1 = W2
gW1 = sum(X4 .* dZ1, 2);              % Z1 = X W1 + b1: dZ1/dW1(i, j) = X(:, i); (B, 1, H, d)
gW2 = sum(A1 .* dZ2, 2);              % dZ2/dW2(j) = A1(:, j)
g = [reshape(gW1, B, []), reshape(sum(dZ1, 2), B, []), reshape(gW2, B, []), sum(dZ2, 2)];
if nargout > 2
    forward = struct('Z1', Z1, 'A1', A1, 'Z2', Z2, 'A2', A2);
end
end
